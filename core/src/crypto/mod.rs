//! Field encryption: keyring and envelope format (AES-256-GCM-SIV).
//!
//! Composition only, no primitives written here: AES-256-GCM-SIV (RFC 8452)
//! composed from `aes`, `polyval` and `ctr` in [`gcm_siv`] (why, and how it
//! is held to the `aes-gcm-siv` crate: that module), `hmac` + `sha2` (subkey derivation, synthetic nonces, blind indexes),
//! `getrandom` (nonces), `zeroize` (key bytes), `base64ct` (constant-time
//! base64url, because envelopes carry ciphertext of secrets).

pub mod envelope;
pub mod gcm_siv;
pub mod keyring;
mod prf;

pub use envelope::{EnvelopeError, Field, FieldDigest, Flow, Mode, SealOptions};
pub use keyring::{Key, KeyId, Keyring, KeyringError};

#[cfg(test)]
mod rfc8452;
