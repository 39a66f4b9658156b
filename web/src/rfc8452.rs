//! AEAD_AES_256_GCM_SIV itself (RFC 8452), exported so the JS tests can run
//! the RFC's known-answer vectors through the cipher as compiled for
//! wasm32: the keyring's own composition (dpp_core::crypto::gcm_siv).

use dpp_core::crypto::gcm_siv::Aes256GcmSiv;
use zeroize::Zeroize;

const KEY_LEN: usize = 32;
const NONCE_LEN: usize = 12;

fn cipher(key: &mut [u8], nonce: &[u8]) -> Result<(Aes256GcmSiv, [u8; NONCE_LEN]), &'static str> {
    let result = match (
        <&[u8; KEY_LEN]>::try_from(&*key),
        <[u8; NONCE_LEN]>::try_from(nonce),
    ) {
        (Err(_), _) => Err("the key must be 32 bytes"),
        (_, Err(_)) => Err("the nonce must be 12 bytes"),
        (Ok(k), Ok(n)) => Ok((Aes256GcmSiv::new(k), n)),
    };
    key.zeroize();
    result
}

/// ciphertext || tag. Wipes `key`.
pub fn encrypt(
    key: &mut [u8],
    nonce: &[u8],
    aad: &[u8],
    plaintext: &[u8],
) -> Result<Vec<u8>, &'static str> {
    let (cipher, nonce) = cipher(key, nonce)?;
    cipher
        .seal(&nonce, aad, plaintext)
        .map_err(|_| "encryption failed")
}

/// The plaintext, or an error when the tag does not verify. Wipes `key`.
pub fn decrypt(
    key: &mut [u8],
    nonce: &[u8],
    aad: &[u8],
    ciphertext: &[u8],
) -> Result<Vec<u8>, &'static str> {
    let (cipher, nonce) = cipher(key, nonce)?;
    cipher
        .open(&nonce, aad, ciphertext)
        .map(|p| p.to_vec())
        .map_err(|_| "authentication failed")
}
