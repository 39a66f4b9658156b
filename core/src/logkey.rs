//! The log key and what is derived from it: keyed pseudonyms and the MAC
//! chain of access records.
//!
//! One secret, read from the process environment (Envoy `host_env_keys`),
//! never from the policy. Purpose-bound subkeys are derived from it so
//! that a pseudonym can never be replayed as a chain MAC or the reverse.
//!
//! Pseudonyms and chain links are keyed BLAKE3 (the hash's keyed mode, a
//! PRF and MAC by design), not HMAC-SHA-256: both are computed for every
//! request a record is written for, and in the Wasm VM (no SHA
//! instructions) keyed BLAKE3 is about 4x faster on a record and 10x on a
//! short value (docs/performance.md). Canary digests stay HMAC-SHA-256:
//! they are compared, not made per record, and the CLI prints them for
//! policies already written.

use base64ct::{Base64, Base64Unpadded, Base64UrlUnpadded, Encoding};
use hmac::Mac;
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

use crate::kdf::{hmac_sha256, subkey, Purpose};

/// Keyed BLAKE3 over the parts, in order.
fn keyed_blake3(key: &[u8; 32], parts: &[&[u8]]) -> blake3::Hash {
    let mut hasher = blake3::Hasher::new_keyed(key);
    for part in parts {
        hasher.update(part);
    }
    let hash = hasher.finalize();
    // The hasher holds the key words: wiped before it goes.
    hasher.zeroize();
    hash
}

/// Length of the log key in bytes (256 bits, HMAC-SHA-256's block-safe size).
pub const LOG_KEY_LEN: usize = crate::kdf::KEY_LEN;

/// Bytes of MAC output kept in a pseudonym: 96 bits make accidental
/// collisions negligible for any log volume, while staying short to read.
pub const PSEUDONYM_BYTES: usize = 12;

/// Bytes of MAC output kept per chain link (128-bit tags).
pub const CHAIN_MAC_BYTES: usize = 16;

/// The secret behind pseudonyms and the log chain. Zeroized on drop; its
/// `Debug` never shows the bytes.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct LogKey([u8; LOG_KEY_LEN]);

impl std::fmt::Debug for LogKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LogKey(<redacted>)")
    }
}

/// Why an environment value is not a usable log key. Never contains the value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LogKeyError {
    Missing,
    Malformed,
}

impl std::fmt::Display for LogKeyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LogKeyError::Missing => f.write_str("is not set"),
            LogKeyError::Malformed => write!(
                f,
                "must hold {LOG_KEY_LEN} bytes as 64 hex digits or base64 (e.g. `openssl rand -base64 32`)"
            ),
        }
    }
}

impl LogKey {
    /// Parses the key from its textual form: 64 hex digits or base64
    /// (standard alphabet, padded or not) of exactly 32 bytes.
    pub fn parse(text: &str) -> Result<LogKey, LogKeyError> {
        let text = text.trim();
        if text.is_empty() {
            return Err(LogKeyError::Missing);
        }
        let bytes: Zeroizing<Vec<u8>> = Zeroizing::new(
            if text.len() == 2 * LOG_KEY_LEN && text.bytes().all(|b| b.is_ascii_hexdigit()) {
                hex_decode(text).ok_or(LogKeyError::Malformed)?
            } else {
                Base64::decode_vec(text)
                    .or_else(|_| Base64Unpadded::decode_vec(text))
                    .map_err(|_| LogKeyError::Malformed)?
            },
        );
        let key: [u8; LOG_KEY_LEN] = bytes
            .as_slice()
            .try_into()
            .map_err(|_| LogKeyError::Malformed)?;
        Ok(LogKey(key))
    }

    /// Reads and parses the environment variable `name`.
    pub fn from_env(name: &str) -> Result<LogKey, LogKeyError> {
        match std::env::var(name) {
            Ok(v) => LogKey::parse(&Zeroizing::new(v)),
            Err(_) => Err(LogKeyError::Missing),
        }
    }

    // Domain separation (crate::kdf): each use gets its own subkey, so
    // outputs of one use are meaningless for the other.

    pub fn pseudonymizer(&self) -> Pseudonymizer {
        Pseudonymizer {
            key: *subkey(&self.0, Purpose::Pseudonym),
        }
    }

    /// The key of canary digests: `dpp-guard canary digest VALUE` and the
    /// filter compute the same HMAC with it.
    pub fn canary_key(&self) -> CanaryKey {
        CanaryKey {
            key: *subkey(&self.0, Purpose::Canary),
        }
    }

    pub fn chain_key(&self) -> ChainKey {
        ChainKey {
            key: *subkey(&self.0, Purpose::LogChain),
        }
    }
}

fn hex_decode(text: &str) -> Option<Vec<u8>> {
    let b = text.as_bytes();
    b.chunks(2)
        .map(|pair| {
            let s = std::str::from_utf8(pair).ok()?;
            u8::from_str_radix(s, 16).ok()
        })
        .collect()
}

/// Turns a PII value into a stable, keyed, truncated token `p:<16 chars>`.
///
/// Keyed (BLAKE3 in keyed mode) rather than a plain hash: an unkeyed hash of an e-mail or an
/// IPv4 address is reversed by hashing every candidate, which is cheap for
/// such small spaces. Without the key the token reveals nothing; with it,
/// the same value always yields the same token, which is what an
/// investigation needs to correlate requests.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct Pseudonymizer {
    key: [u8; 32],
}

impl std::fmt::Debug for Pseudonymizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Pseudonymizer(<keyed>)")
    }
}

impl Pseudonymizer {
    /// Prefix of every pseudonym, so readers and tests can recognise them.
    pub const PREFIX: &'static str = "p:";

    /// The caller normalises `value` (lower-case e-mail, canonical IP) so
    /// that spellings of one value meet on one token.
    pub fn pseudonym(&self, value: &str) -> String {
        let hash = keyed_blake3(&self.key, &[value.as_bytes()]);
        let tag = hash.as_bytes();
        let mut out = String::with_capacity(2 + 16);
        out.push_str(Self::PREFIX);
        out.push_str(&Base64UrlUnpadded::encode_string(&tag[..PSEUDONYM_BYTES]));
        out
    }
}

/// Key of canary digests: HMAC-SHA256 of a value, in full (canaries are
/// compared, not read by people; 256 bits leave no room for collisions).
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct CanaryKey {
    key: [u8; 32],
}

impl std::fmt::Debug for CanaryKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CanaryKey(<keyed>)")
    }
}

impl CanaryKey {
    pub fn digest(&self, value: &[u8]) -> [u8; 32] {
        let mut mac = hmac_sha256(&self.key);
        mac.update(value);
        mac.finalize().into_bytes().into()
    }

    /// The digest as the policy lists it: 64 lower-case hex digits.
    pub fn digest_hex(&self, value: &[u8]) -> String {
        self.digest(value)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }
}

/// Key of the access-record MAC chain.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct ChainKey {
    key: [u8; 32],
}

impl std::fmt::Debug for ChainKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ChainKey(<keyed>)")
    }
}

/// One link's tag, truncated to [`CHAIN_MAC_BYTES`].
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub struct ChainMac(pub [u8; CHAIN_MAC_BYTES]);

impl ChainMac {
    pub fn to_text(&self) -> String {
        Base64UrlUnpadded::encode_string(&self.0)
    }

    pub fn from_text(text: &str) -> Option<ChainMac> {
        let bytes = Base64UrlUnpadded::decode_vec(text).ok()?;
        Some(ChainMac(bytes.as_slice().try_into().ok()?))
    }
}

impl ChainKey {
    /// MAC over the previous link's tag and the record's exact bytes. The
    /// previous tag makes each record depend on its whole history: deleting
    /// or moving a record breaks the next link even though each record is
    /// intact on its own.
    pub fn link(&self, prev: &ChainMac, record: &[u8]) -> ChainMac {
        let hash = keyed_blake3(&self.key, &[&prev.0, record]);
        let mut out = [0u8; CHAIN_MAC_BYTES];
        out.copy_from_slice(&hash.as_bytes()[..CHAIN_MAC_BYTES]);
        ChainMac(out)
    }

    /// Constant-time comparison of a claimed tag with the expected one.
    pub fn verify(&self, prev: &ChainMac, record: &[u8], claimed: &ChainMac) -> bool {
        use subtle::ConstantTimeEq;
        self.link(prev, record).0.ct_eq(&claimed.0).into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEX: &str = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";

    #[test]
    fn parses_hex_and_base64_to_the_same_key() {
        let a = LogKey::parse(HEX).unwrap();
        let b64 = Base64::encode_string(&(0u8..32).collect::<Vec<_>>());
        let b = LogKey::parse(&b64).unwrap();
        assert_eq!(
            a.pseudonymizer().pseudonym("x"),
            b.pseudonymizer().pseudonym("x")
        );
    }

    /// Known answers of keyed BLAKE3 under the derived subkeys (computed
    /// with Python's hmac and the `blake3` package), so a change
    /// of derivation, hash or encoding (which would make pseudonyms
    /// incomparable and break every chain) fails here.
    #[test]
    fn pseudonyms_and_chain_macs_keep_their_values() {
        let k = LogKey::parse(HEX).unwrap();
        assert_eq!(
            k.pseudonymizer().pseudonym("buyer@example.com"),
            "p:AnF7rNi9MaCGjS_b"
        );
        assert_eq!(
            k.chain_key().link(&ChainMac::default(), b"r1").to_text(),
            "qKU-ECtx6IwLPD08UyGF3Q"
        );
        let padded = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
        for text in [padded, padded.trim_end_matches('=')] {
            assert_eq!(
                LogKey::parse(text).unwrap().pseudonymizer().pseudonym("x"),
                k.pseudonymizer().pseudonym("x"),
                "{text}"
            );
        }
    }

    #[test]
    fn refuses_short_long_and_garbage_keys() {
        assert_eq!(LogKey::parse("").map(|_| ()), Err(LogKeyError::Missing));
        assert_eq!(
            LogKey::parse(&Base64::encode_string(&[1u8; 16])).map(|_| ()),
            Err(LogKeyError::Malformed)
        );
        assert_eq!(
            LogKey::parse(&Base64::encode_string(&[1u8; 33])).map(|_| ()),
            Err(LogKeyError::Malformed)
        );
        assert_eq!(
            LogKey::parse("not a key!").map(|_| ()),
            Err(LogKeyError::Malformed)
        );
    }

    #[test]
    fn debug_never_shows_key_bytes() {
        let k = LogKey::parse(HEX).unwrap();
        let shown = format!("{k:?} {:?} {:?}", k.pseudonymizer(), k.chain_key());
        assert!(!shown.contains("0, 1, 2"), "{shown}");
        assert!(shown.contains("redacted"));
    }

    #[test]
    fn pseudonyms_are_stable_keyed_and_short() {
        let k1 = LogKey::parse(HEX).unwrap().pseudonymizer();
        let k2 = LogKey::parse(&"ab".repeat(32)).unwrap().pseudonymizer();
        let p = k1.pseudonym("buyer@example.com");
        assert_eq!(p, k1.pseudonym("buyer@example.com"));
        assert_ne!(p, k2.pseudonym("buyer@example.com"));
        assert_ne!(p, k1.pseudonym("buyer2@example.com"));
        assert!(p.starts_with("p:") && p.len() == 18, "{p}");
    }

    #[test]
    fn pseudonym_and_chain_keys_differ() {
        let k = LogKey::parse(HEX).unwrap();
        let chain = k.chain_key().link(&ChainMac::default(), b"x");
        let pseudo = k.pseudonymizer().pseudonym("x");
        assert!(!pseudo.contains(&chain.to_text()[..8]));
    }

    #[test]
    fn chain_link_depends_on_previous_tag_and_record() {
        let c = LogKey::parse(HEX).unwrap().chain_key();
        let a = c.link(&ChainMac::default(), b"r1");
        let b = c.link(&a, b"r2");
        assert!(c.verify(&a, b"r2", &b));
        assert!(!c.verify(&ChainMac::default(), b"r2", &b));
        assert!(!c.verify(&a, b"r3", &b));
        assert_eq!(ChainMac::from_text(&b.to_text()), Some(b));
    }
}
