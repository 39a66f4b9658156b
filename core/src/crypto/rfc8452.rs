//! RFC 8452 Appendix C.2 (AEAD_AES_256_GCM_SIV) known-answer tests, run
//! through the cipher the keyring holds (crypto/gcm_siv.rs), so a change of
//! composition, crate or version that breaks the algorithm fails here.

use super::gcm_siv::Aes256GcmSiv;
/// RFC 8452 Appendix C.2, shared with the npm package's tests (web/tests):
/// hex fields `key`, `nonce`, `aad`, `plaintext`, `result` (ciphertext || tag).
const VECTORS_JSON: &str = include_str!("../../testdata/rfc8452-aes-256-gcm-siv.json");

fn vectors() -> Vec<(String, String, String, String, String)> {
    let doc: serde_json::Value = serde_json::from_str(VECTORS_JSON).unwrap();
    let field = |v: &serde_json::Value, k: &str| v[k].as_str().unwrap().to_string();
    doc["vectors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| {
            (
                field(v, "key"),
                field(v, "nonce"),
                field(v, "aad"),
                field(v, "plaintext"),
                field(v, "result"),
            )
        })
        .collect()
}

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

#[test]
fn rfc8452_aes_256_gcm_siv_vectors() {
    let vectors = vectors();
    assert!(vectors.len() >= 15);
    for (i, (key, nonce, aad, pt, ct)) in vectors.iter().enumerate() {
        let key: [u8; 32] = unhex(key).try_into().unwrap();
        let nonce: [u8; 12] = unhex(nonce).try_into().unwrap();
        let cipher = Aes256GcmSiv::new(&key);
        let (aad, pt, ct) = (unhex(aad), unhex(pt), unhex(ct));
        let sealed = cipher.seal(&nonce, &aad, &pt).unwrap();
        assert_eq!(sealed, ct, "vector {i}: encrypt");
        let opened = cipher.open(&nonce, &aad, &ct).unwrap();
        assert_eq!(&opened[..], &pt[..], "vector {i}: decrypt");
        let mut bad = ct.clone();
        bad[0] ^= 1;
        assert!(
            cipher.open(&nonce, &aad, &bad).is_err(),
            "vector {i}: tamper"
        );
    }
}
