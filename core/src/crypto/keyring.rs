//! The keyring: 256-bit keys with ids, one primary for encryption, the
//! others decrypt-only.
//!
//! Text form (the value of the environment variable the policy names, also
//! what `dpp-guard keygen` prints), entries separated by `,`, `;` or white
//! space:
//!
//! ```text
//! primary=k2 k1=<base64url 32 bytes> k2=<base64url 32 bytes>
//! ```
//!
//! Rotation is add (new key, not primary), roll out everywhere, promote
//! (`primary=` names it); old keys keep decrypting until removed.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};

use super::gcm_siv::Aes256GcmSiv;
use base64ct::{Base64UrlUnpadded, Encoding};
use zeroize::{Zeroize, Zeroizing};

use crate::kdf::{subkey, Purpose};

/// Length of every key, in bytes (AES-256).
pub const KEY_LEN: usize = crate::kdf::KEY_LEN;

/// A key id: 1 to 32 characters of `[A-Za-z0-9_-]`. It is written in every
/// envelope and authenticated with it, so ids must never be reused for
/// different key material.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct KeyId(String);

impl KeyId {
    pub const MAX_LEN: usize = 32;

    pub fn new(id: &str) -> Result<KeyId, KeyringError> {
        if id.is_empty()
            || id.len() > Self::MAX_LEN
            || !id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        {
            return Err(KeyringError::BadKeyId);
        }
        if id == "primary" {
            return Err(KeyringError::BadKeyId);
        }
        Ok(KeyId(id.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyId({})", self.0)
    }
}

/// Why a keyring text was refused. Never carries key bytes or the text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyringError {
    Empty,
    BadEntry { position: usize },
    BadKeyId,
    BadKey { id: String },
    DuplicateId { id: String },
    NoPrimary,
    UnknownPrimary { id: String },
    Random,
}

impl fmt::Display for KeyringError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeyringError::Empty => f.write_str("the keyring holds no key"),
            KeyringError::BadEntry { position } => write!(
                f,
                "entry {position} is not `ID=BASE64URL-KEY` or `primary=ID`"
            ),
            KeyringError::BadKeyId => f.write_str(
                "a key id must be 1 to 32 characters of [A-Za-z0-9_-] and not `primary`",
            ),
            KeyringError::BadKey { id } => write!(
                f,
                "key {id:?} is not 32 bytes of unpadded base64url (43 characters)"
            ),
            KeyringError::DuplicateId { id } => write!(f, "key id {id:?} appears twice"),
            KeyringError::NoPrimary => f.write_str("no `primary=ID` entry"),
            KeyringError::UnknownPrimary { id } => {
                write!(f, "primary {id:?} is not a key of the keyring")
            }
            KeyringError::Random => f.write_str("the system random source failed"),
        }
    }
}

impl std::error::Error for KeyringError {}

/// One key, expanded once: the AES-GCM-SIV key schedule and the PRF keys
/// are computed when the keyring is loaded, never per field.
pub struct Key {
    id: KeyId,
    /// AES-256-GCM-SIV with the key schedule of the encryption subkey done.
    /// The `aes` crate zeroizes its round keys on drop (feature `zeroize`).
    pub(crate) aead: Aes256GcmSiv,
    /// Keys of the two PRFs: synthetic nonces (deterministic mode) and
    /// blind indexes. Separate subkeys so a blind index never reveals a
    /// nonce-derivation output and vice versa.
    pub(crate) nonce_key: Zeroizing<[u8; KEY_LEN]>,
    pub(crate) index_key: Zeroizing<[u8; KEY_LEN]>,
    /// Which expansion of key material this is, unique in the process: an
    /// envelope [`super::envelope::Scratch`] keeps derived per-nonce keys
    /// only for the key they came from (two keyrings may both have a `k1`).
    pub(crate) instance: u64,
}

impl Key {
    /// Expands a 256-bit master key into independent subkeys
    /// (crate::kdf, one purpose each): the same master bytes are never used
    /// by two algorithms.
    fn expand(id: KeyId, master: &Zeroizing<[u8; KEY_LEN]>) -> Key {
        let enc = subkey(master, Purpose::Aead);
        let aead = Aes256GcmSiv::new(&enc);
        static INSTANCES: AtomicU64 = AtomicU64::new(0);
        Key {
            id,
            aead,
            nonce_key: subkey(master, Purpose::SyntheticNonce),
            index_key: subkey(master, Purpose::BlindIndex),
            instance: INSTANCES.fetch_add(1, Ordering::Relaxed),
        }
    }

    pub fn id(&self) -> &KeyId {
        &self.id
    }
}

impl fmt::Debug for Key {
    // Never print key material; the id is enough to tell keys apart.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Key({})", self.id)
    }
}

/// Keys by id, one of them primary.
pub struct Keyring {
    keys: Vec<Key>,
    primary: usize,
}

impl fmt::Debug for Keyring {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Keyring")
            .field("primary", &self.primary().id)
            .field(
                "ids",
                &self.keys.iter().map(|k| k.id.as_str()).collect::<Vec<_>>(),
            )
            .finish()
    }
}

impl Keyring {
    /// Parses the text form. The input may be a secret: errors name entry
    /// positions and ids, never key text.
    pub fn parse(text: &str) -> Result<Keyring, KeyringError> {
        let mut keys: Vec<Key> = Vec::new();
        let mut primary: Option<String> = None;
        let entries = text
            .split(|c: char| c == ',' || c == ';' || c.is_whitespace())
            .filter(|e| !e.is_empty());
        for (position, entry) in entries.enumerate() {
            let Some((name, value)) = entry.split_once('=') else {
                return Err(KeyringError::BadEntry { position });
            };
            if name == "primary" {
                if primary.is_some() {
                    return Err(KeyringError::DuplicateId {
                        id: "primary".into(),
                    });
                }
                primary = Some(value.to_string());
                continue;
            }
            let id = KeyId::new(name)?;
            if keys.iter().any(|k| k.id == id) {
                return Err(KeyringError::DuplicateId { id: id.0 });
            }
            let mut master = Zeroizing::new([0u8; KEY_LEN]);
            // decode into a scratch buffer so a too-long value is refused
            // without ever being copied outside a zeroized buffer.
            let mut scratch = Zeroizing::new([0u8; KEY_LEN + 3]);
            match Base64UrlUnpadded::decode(value, scratch.as_mut()) {
                Ok(bytes) if bytes.len() == KEY_LEN => master.copy_from_slice(bytes),
                _ => return Err(KeyringError::BadKey { id: id.0 }),
            }
            scratch.zeroize();
            keys.push(Key::expand(id, &master));
        }
        if keys.is_empty() {
            return Err(KeyringError::Empty);
        }
        let primary_id = match primary {
            Some(p) => p,
            // A single key is unambiguous; with more, the operator must say
            // which one encrypts.
            None if keys.len() == 1 => keys[0].id.0.clone(),
            None => return Err(KeyringError::NoPrimary),
        };
        let primary = keys
            .iter()
            .position(|k| k.id.0 == primary_id)
            .ok_or(KeyringError::UnknownPrimary { id: primary_id })?;
        Ok(Keyring { keys, primary })
    }

    /// The key new envelopes are made with.
    pub fn primary(&self) -> &Key {
        // `primary` is a valid index by construction.
        &self.keys[self.primary]
    }

    /// The key an envelope names. Never a search over keys: GCM-SIV has no
    /// key commitment, so trying keys could "succeed" under the wrong one.
    pub fn get(&self, id: &str) -> Option<&Key> {
        self.keys.iter().find(|k| k.id.0 == id)
    }

    pub fn ids(&self) -> impl Iterator<Item = &KeyId> {
        self.keys.iter().map(|k| &k.id)
    }
}

/// A fresh key entry (`ID=BASE64URL`) from the system random source.
pub fn generate_entry(id: &KeyId) -> Result<Zeroizing<String>, KeyringError> {
    let mut key = Zeroizing::new([0u8; KEY_LEN]);
    getrandom::fill(key.as_mut()).map_err(|_| KeyringError::Random)?;
    let mut out = Zeroizing::new(String::with_capacity(id.0.len() + 1 + 43));
    out.push_str(id.as_str());
    out.push('=');
    out.push_str(&Base64UrlUnpadded::encode_string(key.as_ref()));
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const K1: &str = "k1=AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8";
    const K2: &str = "k2=ICEiIyQlJicoKSorLC0uLzAxMjM0NTY3ODk6Ozw9Pj8";

    #[test]
    fn single_key_is_primary() {
        let ring = Keyring::parse(K1).unwrap();
        assert_eq!(ring.primary().id().as_str(), "k1");
    }

    #[test]
    fn primary_is_named_and_others_decrypt() {
        let ring = Keyring::parse(&format!("{K1}, {K2}; primary=k2")).unwrap();
        assert_eq!(ring.primary().id().as_str(), "k2");
        assert!(ring.get("k1").is_some());
        assert!(ring.get("k3").is_none());
    }

    #[test]
    fn refusals_never_echo_key_text() {
        let cases = [
            ("", KeyringError::Empty),
            (&format!("{K1} {K2}") as &str, KeyringError::NoPrimary),
            (
                &format!("{K1} primary=k9"),
                KeyringError::UnknownPrimary { id: "k9".into() },
            ),
            (
                "k1=AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8x",
                KeyringError::BadKey { id: "k1".into() },
            ),
            (
                "k1=AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh",
                KeyringError::BadKey { id: "k1".into() },
            ),
            (
                &format!("{K1} {K1}"),
                KeyringError::DuplicateId { id: "k1".into() },
            ),
            ("bad id=abc", KeyringError::BadEntry { position: 0 }),
            ("k.1=abc", KeyringError::BadKeyId),
            (
                "secretwithoutequals",
                KeyringError::BadEntry { position: 0 },
            ),
        ];
        for (text, want) in cases {
            let err = Keyring::parse(text).unwrap_err();
            assert_eq!(err, want, "{text}");
            assert!(!err.to_string().contains("AAEC"));
        }
    }

    #[test]
    fn debug_never_prints_key_material() {
        let ring = Keyring::parse(K1).unwrap();
        let dbg = format!("{ring:?} {:?}", ring.primary());
        assert!(dbg.contains("k1"));
        assert!(!dbg.contains("AAEC"));
        assert!(!dbg.contains("0, 1, 2"));
    }

    #[test]
    fn generated_entries_parse_and_differ() {
        let id = KeyId::new("gen").unwrap();
        let a = generate_entry(&id).unwrap();
        let b = generate_entry(&id).unwrap();
        assert_ne!(*a, *b);
        assert!(Keyring::parse(&a).is_ok());
    }
}
