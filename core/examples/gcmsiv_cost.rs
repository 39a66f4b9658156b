//! Cost of one AES-256-GCM-SIV seal of a short field, alone (native).
//! `cargo run --release -p dpp-guard-core --example gcmsiv_cost`
use std::hint::black_box;
use std::time::Instant;

use aes_gcm_siv::aead::{AeadInPlace, KeyInit};
use aes_gcm_siv::{Aes256GcmSiv, Nonce};

fn main() {
    let c = Aes256GcmSiv::new(&[7u8; 32].into());
    let mut buf = *b"\"jq7f2k9x@marketplace.example.com\"";
    let aad = [1u8; 40];
    let n = 200_000;
    let t = Instant::now();
    for i in 0..n {
        let mut nonce = [0u8; 12];
        nonce[..8].copy_from_slice(&(i as u64).to_le_bytes());
        black_box(
            c.encrypt_in_place_detached(Nonce::from_slice(&nonce), &aad, &mut buf)
                .unwrap(),
        );
    }
    println!(
        "seal 34 B: {:.0} ns",
        t.elapsed().as_nanos() as f64 / n as f64
    );
    let t = Instant::now();
    let mut nonce = [0u8; 12];
    for _ in 0..n / 10 {
        getrandom::fill(&mut nonce).unwrap();
        black_box(&nonce);
    }
    println!(
        "getrandom 12 B: {:.0} ns",
        t.elapsed().as_nanos() as f64 / (n / 10) as f64
    );
}
