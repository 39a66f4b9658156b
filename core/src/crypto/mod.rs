//! Field encryption: keyring and envelope format (AES-256-GCM-SIV).
//!
//! Composition only, no primitives written here: `aes-gcm-siv` (RFC 8452),
//! `hmac` + `sha2` (subkey derivation, synthetic nonces, blind indexes),
//! `getrandom` (nonces), `zeroize` (key bytes), `base64ct` (constant-time
//! base64url, because envelopes carry ciphertext of secrets).

pub mod envelope;
pub mod keyring;
mod prf;

pub use envelope::{EnvelopeError, Field, FieldDigest, Flow, Mode, SealOptions};
pub use keyring::{Key, KeyId, Keyring, KeyringError};

#[cfg(test)]
mod rfc8452;
