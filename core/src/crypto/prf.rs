//! HMAC-SHA256 as a PRF keyed with a 256-bit subkey: the keyed hash of
//! envelopes (synthetic nonces, blind indexes). The construction lives in
//! `crate::kdf`, shared with the keyring's subkey derivation and the log key.

pub(crate) use crate::kdf::hmac_sha256 as prf;
