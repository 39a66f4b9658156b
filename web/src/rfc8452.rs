//! AEAD_AES_256_GCM_SIV itself (RFC 8452), exported so the JS tests can run
//! the RFC's known-answer vectors through the cipher as compiled for
//! wasm32: the same `aes-gcm-siv` crate, version and features the keyring
//! uses (Cargo unifies them into one build).

use aes_gcm_siv::aead::{Aead, KeyInit, Payload};
use aes_gcm_siv::{Aes256GcmSiv, Nonce};
use zeroize::Zeroize;

const KEY_LEN: usize = 32;
const NONCE_LEN: usize = 12;

fn cipher(key: &mut [u8], nonce: &[u8]) -> Result<Aes256GcmSiv, &'static str> {
    let result = if key.len() != KEY_LEN {
        Err("the key must be 32 bytes")
    } else if nonce.len() != NONCE_LEN {
        Err("the nonce must be 12 bytes")
    } else {
        Aes256GcmSiv::new_from_slice(key).map_err(|_| "the key must be 32 bytes")
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
    cipher(key, nonce)?
        .encrypt(
            Nonce::from_slice(nonce),
            Payload {
                msg: plaintext,
                aad,
            },
        )
        .map_err(|_| "encryption failed")
}

/// The plaintext, or an error when the tag does not verify. Wipes `key`.
pub fn decrypt(
    key: &mut [u8],
    nonce: &[u8],
    aad: &[u8],
    ciphertext: &[u8],
) -> Result<Vec<u8>, &'static str> {
    cipher(key, nonce)?
        .decrypt(
            Nonce::from_slice(nonce),
            Payload {
                msg: ciphertext,
                aad,
            },
        )
        .map_err(|_| "authentication failed")
}
