//! HMAC-SHA256 as a PRF keyed with a 256-bit subkey: the one keyed hash of
//! the keyring (subkey derivation) and of envelopes (synthetic nonces,
//! blind indexes). Its own module so neither depends on the other.

use hmac::Hmac;
use sha2::Sha256;

/// HMAC-SHA256 keyed with a 256-bit key. HMAC pads keys shorter than its
/// 64-byte block with zeros, so padding here gives the same function
/// through the infallible constructor (no `unwrap` on the request path).
pub(crate) fn prf(key: &[u8; 32]) -> Hmac<Sha256> {
    use hmac::digest::KeyInit;
    let mut block = zeroize::Zeroizing::new([0u8; 64]);
    block[..32].copy_from_slice(key);
    <Hmac<Sha256> as KeyInit>::new(block.as_ref().into())
}
