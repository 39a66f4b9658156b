//! Fixed keys for the targets. Test-only material, generated for this
//! crate; never used anywhere else.

use std::sync::OnceLock;

use dpp_core::crypto::Keyring;
use dpp_core::logkey::{ChainKey, LogKey};

/// Two keys, `k1` primary, `k2` decrypt-only (rotation state).
pub const KEYRING_TEXT: &str = "primary=k1 k1=AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8 \
                                k2=ICEiIyQlJicoKSorLC0uLzAxMjM0NTY3ODk6Ozw9Pj8";

pub fn keyring() -> &'static Keyring {
    static K: OnceLock<Keyring> = OnceLock::new();
    K.get_or_init(|| Keyring::parse(KEYRING_TEXT).expect("fixture keyring parses"))
}

pub fn log_key() -> &'static LogKey {
    static K: OnceLock<LogKey> = OnceLock::new();
    K.get_or_init(|| LogKey::parse(&"5a".repeat(32)).expect("fixture log key parses"))
}

/// A second log key: the scrub check scrubs each input under both, so that
/// the scrubber's own pseudonyms (which differ between the keys) are told
/// apart from look-alikes the input held (which do not).
pub fn other_log_key() -> &'static LogKey {
    static K: OnceLock<LogKey> = OnceLock::new();
    K.get_or_init(|| LogKey::parse(&"a5".repeat(32)).expect("fixture log key parses"))
}

pub fn chain_key() -> ChainKey {
    log_key().chain_key()
}
