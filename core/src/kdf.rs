//! Key derivation, one way for every secret dpp-guard holds: a keyring's
//! master keys (field encryption) and the log key (pseudonyms, the access
//! record chain) are each expanded into purpose-bound subkeys, so the same
//! secret bytes are never used by two algorithms and an output of one use
//! means nothing to another.
//!
//! `subkey = HMAC-SHA256(secret, "dpp-guard/v1/" || label)`, HMAC-SHA256
//! used as a PRF on a uniformly random 256-bit secret (what HKDF-Expand
//! does for one output block). Changing a label or the construction
//! changes every envelope and log chain: the known-answer tests pin them.

use hmac::digest::KeyInit;
use hmac::Hmac;
use hmac::Mac;
use sha2::Sha256;
use zeroize::Zeroizing;

/// Length of every secret and subkey (256 bits).
pub const KEY_LEN: usize = 32;

/// Every use of a derived key, with its label. One variant per purpose: a
/// new use gets a new label, never a shared one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    /// AES-256-GCM-SIV key of a keyring entry.
    Aead,
    /// PRF key of a keyring entry's synthetic nonces (deterministic mode).
    SyntheticNonce,
    /// PRF key of a keyring entry's blind indexes.
    BlindIndex,
    /// HMAC key of the log key's pseudonyms.
    Pseudonym,
    /// HMAC key of the log key's access-record chain.
    LogChain,
    /// HMAC key of canary digests (docs/monitoring.md).
    Canary,
}

impl Purpose {
    pub const ALL: [Purpose; 6] = [
        Purpose::Aead,
        Purpose::SyntheticNonce,
        Purpose::BlindIndex,
        Purpose::Pseudonym,
        Purpose::LogChain,
        Purpose::Canary,
    ];

    /// The label under the common `dpp-guard/v1/` prefix.
    pub fn label(self) -> &'static str {
        match self {
            Purpose::Aead => "aead",
            Purpose::SyntheticNonce => "synthetic-nonce",
            Purpose::BlindIndex => "blind-index",
            Purpose::Pseudonym => "pseudonym",
            Purpose::LogChain => "log-chain",
            Purpose::Canary => "canary",
        }
    }
}

/// Domain prefix of every label, versioned with the construction.
const DOMAIN: &[u8] = b"dpp-guard/v1/";

/// HMAC-SHA256 keyed with a 256-bit key. HMAC pads keys shorter than its
/// 64-byte block with zeros, so padding here gives the same function
/// through the infallible block-size constructor (no `unwrap`/`expect`).
pub fn hmac_sha256(key: &[u8; KEY_LEN]) -> Hmac<Sha256> {
    let mut block = Zeroizing::new([0u8; 64]);
    block[..KEY_LEN].copy_from_slice(key);
    <Hmac<Sha256> as KeyInit>::new(block.as_ref().into())
}

/// The subkey of `secret` for `purpose`, zeroized on drop.
pub fn subkey(secret: &[u8; KEY_LEN], purpose: Purpose) -> Zeroizing<[u8; KEY_LEN]> {
    let mut mac = hmac_sha256(secret);
    mac.update(DOMAIN);
    mac.update(purpose.label().as_bytes());
    let mut out = Zeroizing::new([0u8; KEY_LEN]);
    out.copy_from_slice(&mac.finalize().into_bytes());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// Known answers (Python: hmac.new(bytes(range(32)),
    /// b"dpp-guard/v1/" + label, "sha256")), the values the keyring and the
    /// log key derived before they shared this helper: envelopes and log
    /// chains made earlier still open and verify.
    #[test]
    fn subkeys_match_the_published_construction() {
        let secret: [u8; KEY_LEN] = std::array::from_fn(|i| i as u8);
        let want = [
            (
                Purpose::Aead,
                "a8b678a4a4a3a1bb58bedf526b050e27822964faffd05a223bd0ccbbfcb1f6ee",
            ),
            (
                Purpose::SyntheticNonce,
                "54f5f9c4d48a285f2c237950cf36e56f7d4ff2d30482df5ccd48e33cbcf19513",
            ),
            (
                Purpose::BlindIndex,
                "fcffb7b2edb9ea8742f02089fee49efccda04d76cd3633572bc44d3dab989b97",
            ),
            (
                Purpose::Pseudonym,
                "09dea0f2a6a25cdc6b4657a76e983f05f98af5cdfc41354e5a135d03f45b7732",
            ),
            (
                Purpose::LogChain,
                "1ac1c6464318734fc4c5a472cbfbf7f692596ab43f9a6602f302c60f13b1c692",
            ),
        ];
        for (purpose, expected) in want {
            assert_eq!(
                hex(subkey(&secret, purpose).as_ref()),
                expected,
                "{purpose:?}"
            );
        }
    }

    #[test]
    fn every_purpose_has_its_own_label() {
        let mut labels: Vec<&str> = Purpose::ALL.iter().map(|p| p.label()).collect();
        labels.sort_unstable();
        labels.dedup();
        assert_eq!(labels.len(), Purpose::ALL.len());
    }

    #[test]
    fn padded_key_is_the_same_hmac_as_the_plain_key() {
        let key = [7u8; KEY_LEN];
        let mut a = hmac_sha256(&key);
        a.update(b"m");
        let mut b = <Hmac<Sha256> as Mac>::new_from_slice(&key).unwrap();
        b.update(b"m");
        assert_eq!(a.finalize().into_bytes(), b.finalize().into_bytes());
    }
}
