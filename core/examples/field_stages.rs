//! Per-field cost of protected traffic, stage by stage, on the benchmark's
//! order (bench/orders.py shape: 16 PII fields of the sp-api-orders preset,
//! about 4 KiB): what one field costs to seal and to open, and what
//! surrounds the AES-GCM-SIV call (selection, digest, nonce, base64, copies).
//!
//! Native: `cargo run --release -p dpp-guard-core --example field_stages`
//! In V8 (the engine Envoy runs the filter in), through Node's WASI:
//! `cargo build --release -p dpp-guard-core --example field_stages --target wasm32-wasip1`
//! `node --no-warnings core/examples/wasi-run.mjs target/wasm32-wasip1/release/examples/field_stages.wasm`
//! In wasmtime: `.venv/bin/python core/examples/wasi-run.py target/wasm32-wasip1/release/examples/field_stages.wasm`
//! With Wasm SIMD: add `RUSTFLAGS="-C target-feature=+simd128"` (and a
//! separate `--target-dir`) to the build.
//!
//! Every figure is the minimum and the median of 21 runs of about 20 ms,
//! in microseconds; the runs of all stages are interleaved so machine drift
//! spreads over all of them. On a shared machine the minimum is the better
//! estimate of the undisturbed cost.

use std::hint::black_box;
use std::time::Instant;

use aes::cipher::generic_array::GenericArray;
use aes::cipher::BlockEncrypt;
use aes_gcm_siv::aead::{AeadInPlace, KeyInit};
use aes_gcm_siv::Nonce;
use base64ct::{Base64UrlUnpadded, Encoding};
use dpp_core::crypto::envelope::{self, Field, Scratch, SealOptions};
use dpp_core::crypto::gcm_siv::Aes256GcmSiv;
use dpp_core::crypto::{FieldDigest, Flow, Keyring, Mode};
use dpp_core::json::{self, Bound};
use dpp_core::policy::{Direction, FieldRules, Policy};
use dpp_core::protect;

const ORDER: &str = r#"{"payload": {
  "AmazonOrderId": "902-3159896-1390916", "SellerOrderId": "SO-000001",
  "PurchaseDate": "2026-11-27T10:15:42Z", "LastUpdateDate": "2026-11-27T10:48:03Z",
  "OrderStatus": "Unshipped", "FulfillmentChannel": "MFN", "SalesChannel": "Amazon.de",
  "ShipServiceLevel": "Std DE Dom", "OrderTotal": {"CurrencyCode": "EUR", "Amount": "129.97"},
  "NumberOfItemsShipped": 0, "NumberOfItemsUnshipped": 3, "PaymentMethod": "Other",
  "PaymentMethodDetails": ["Standard"], "MarketplaceId": "A1PA6795UKMFR9",
  "ShipmentServiceLevelCategory": "Standard", "OrderType": "StandardOrder",
  "EarliestShipDate": "2026-11-28T23:00:00Z", "LatestShipDate": "2026-11-30T22:59:59Z",
  "IsBusinessOrder": false, "IsPrime": false, "IsPremiumOrder": false, "IsGlobalExpressEnabled": false,
  "BuyerInfo": {"BuyerEmail": "maria.schmidt.4711@marketplace.amazon.de", "BuyerName": "Maria Schmidt",
                "BuyerCounty": "Sachsen", "PurchaseOrderNumber": "PO-2026-11-4711",
                "BuyerTaxInfo": {"CompanyLegalName": "Schmidt Handel GmbH", "TaxingRegion": "DE"}},
  "ShippingAddress": {"Name": "Maria Schmidt", "AddressLine1": "Hauptstrasse 17", "AddressLine2": "Hinterhaus",
                      "AddressLine3": "3. OG links", "City": "Leipzig", "County": "Leipzig Stadt",
                      "District": "Mitte", "StateOrRegion": "Sachsen", "PostalCode": "04109",
                      "CountryCode": "DE", "Phone": "+49 341 5550147"},
  "OrderItems": [
    {"ASIN": "B012345678", "SellerSKU": "SKU-1-0-1234", "OrderItemId": "12345678901234",
     "Title": "Stainless steel insulated water bottle, 750 ml, leak-proof lid", "QuantityOrdered": 1,
     "QuantityShipped": 0, "ItemPrice": {"CurrencyCode": "EUR", "Amount": "39.99"},
     "ItemTax": {"CurrencyCode": "EUR", "Amount": "6.40"}, "ShippingPrice": {"CurrencyCode": "EUR", "Amount": "4.99"},
     "PromotionDiscount": {"CurrencyCode": "EUR", "Amount": "0.00"}, "IsGift": "false", "ConditionId": "New",
     "IsTransparency": false, "ProductInfo": {"NumberOfItems": "1"}},
    {"ASIN": "B087654321", "SellerSKU": "SKU-1-1-5678", "OrderItemId": "12345678905678",
     "Title": "Stainless steel insulated water bottle, 750 ml, leak-proof lid", "QuantityOrdered": 2,
     "QuantityShipped": 0, "ItemPrice": {"CurrencyCode": "EUR", "Amount": "79.98"},
     "ItemTax": {"CurrencyCode": "EUR", "Amount": "12.80"}, "ShippingPrice": {"CurrencyCode": "EUR", "Amount": "4.99"},
     "PromotionDiscount": {"CurrencyCode": "EUR", "Amount": "0.00"}, "IsGift": "false", "ConditionId": "New",
     "IsTransparency": false, "ProductInfo": {"NumberOfItems": "1"}}
  ]
}}"#;

const KEYS: &str = "k1=AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8";

fn rules(policy: &Policy, route: usize, dir: Direction) -> &FieldRules {
    policy.routes[route].fields(dir).unwrap()
}

/// One selected value with what the rewrite would give the envelope code.
struct Sel {
    path: String,
    raw: Vec<u8>,
    digest: FieldDigest,
    context: Vec<u8>,
}

fn collect(body: &[u8], rules: &FieldRules) -> Vec<Sel> {
    let mut out = Vec::new();
    json::splice(body, &rules.automaton, |sel, w| {
        let context = rules.rules[sel.rule].context.clone();
        let digest = rules
            .digest(sel.state)
            .copied()
            .unwrap_or_else(|| FieldDigest::new(rules.direction.flow(), sel.path, &context));
        out.push(Sel {
            path: sel.path.into(),
            raw: sel.raw.into(),
            digest,
            context,
        });
        w.extend_from_slice(sel.raw);
        Ok::<_, ()>(())
    })
    .unwrap();
    out
}

type Stage<'a> = (&'static str, usize, Box<dyn FnMut() + 'a>);

fn main() {
    let policy = Policy::from_json(
        br#"{"version":1,"keys":{"env":"K"},"routes":[
            {"name":"fields","encrypt":[{"direction":"request","preset":"sp-api-orders"}],
             "decrypt":[{"direction":"response","preset":"sp-api-orders"}]},
            {"name":"objects","encrypt":[{"direction":"request","preset":"sp-api-orders","granularity":"object"}]},
            {"name":"bound","encrypt":[{"direction":"request","preset":"sp-api-orders","context":"sp-api-orders",
              "context_fields":["$.payload.Orders[*].AmazonOrderId","$.payload.AmazonOrderId","$.orders[*].orderId","$.order.orderId"]}]},
            {"name":"open","decrypt":[{"direction":"request","preset":"sp-api-orders"}]},
            {"name":"open-objects","decrypt":[{"direction":"request","preset":"sp-api-orders","granularity":"object"}]}]}"#,
    )
    .unwrap();
    let ring = Keyring::parse(KEYS).unwrap();
    let body = ORDER.as_bytes();
    let enc = rules(&policy, 0, Direction::Request);
    let obj = rules(&policy, 1, Direction::Request);
    let bound = rules(&policy, 2, Direction::Request);
    let dec = rules(&policy, 3, Direction::Request);
    let dec_obj = rules(&policy, 4, Direction::Request);
    let sealed = protect::rewrite(enc, &ring, body).unwrap().unwrap();
    let sealed_obj = protect::rewrite(obj, &ring, body).unwrap().unwrap();
    let plain = collect(body, enc);
    let envelopes = collect(&sealed, dec);
    let n = plain.len();
    let n_obj = collect(body, obj).len();
    let key = ring.primary();
    let cipher = Aes256GcmSiv::new(&[7u8; 32]);
    let reference = aes_gcm_siv::Aes256GcmSiv::new(&[7u8; 32].into());
    let mut scratch = Scratch::default();
    let mut out = Vec::with_capacity(8192);
    let mut buf = *b"\"maria.schmidt.4711@marketplace.amazon.de\"";
    let mut buf2 = buf;
    let aad_new = [3u8; 35];

    let mut i = 0u64;
    let mut i2 = 1u64 << 40;

    let key_generating_key = aes::Aes256::new(GenericArray::from_slice(&[5u8; 32]));
    let mut stages: Vec<Stage<'_>> = vec![
        (
            "scan: json::validate",
            1,
            Box::new(|| {
                json::validate(black_box(body)).unwrap();
            }),
        ),
        (
            "select: automaton walk + splice copy, no crypto",
            1,
            Box::new(|| {
                black_box(
                    json::splice(body, &enc.automaton, |s, w| {
                        w.extend_from_slice(s.raw);
                        Ok::<_, ()>(())
                    })
                    .unwrap(),
                );
            }),
        ),
        (
            "select, context_fields (record pre-scan)",
            1,
            Box::new(|| {
                black_box(
                    json::splice(body, &bound.automaton, |s, w| {
                        w.extend_from_slice(s.raw);
                        Ok::<_, ()>(())
                    })
                    .unwrap(),
                );
            }),
        ),
        (
            "seal only: every field, D precomputed",
            n,
            Box::new(|| {
                for s in &plain {
                    out.clear();
                    let f = Field {
                        path: &s.path,
                        context: &s.context,
                        digest: &s.digest,
                        bound: Bound::NONE,
                    };
                    let o = SealOptions {
                        mode: Mode::Random,
                        blind_index: false,
                    };
                    envelope::seal_into(key, &f, &s.raw, o, &mut scratch, &mut out).unwrap();
                }
                black_box(&out);
            }),
        ),
        (
            "whole encrypt rewrite (protect::rewrite)",
            n,
            Box::new(|| {
                black_box(protect::rewrite(enc, &ring, black_box(body)).unwrap());
            }),
        ),
        (
            "whole encrypt rewrite, context_fields (shipped policy)",
            n,
            Box::new(|| {
                black_box(protect::rewrite(bound, &ring, black_box(body)).unwrap());
            }),
        ),
        (
            "whole encrypt rewrite, granularity object",
            n_obj,
            Box::new(|| {
                black_box(protect::rewrite(obj, &ring, black_box(body)).unwrap());
            }),
        ),
        (
            "open only: every field",
            n,
            Box::new(|| {
                let mut s2 = Scratch::default();
                let mut o2 = Vec::with_capacity(256);
                for s in &envelopes {
                    o2.clear();
                    let f = Field {
                        path: &s.path,
                        context: &s.context,
                        digest: &s.digest,
                        bound: Bound::NONE,
                    };
                    envelope::open_into(&ring, &f, &s.raw[1..s.raw.len() - 1], &mut s2, &mut o2)
                        .unwrap();
                }
                black_box(&o2);
            }),
        ),
        (
            "whole decrypt rewrite (protect::rewrite)",
            n,
            Box::new(|| {
                black_box(protect::rewrite(dec, &ring, black_box(&sealed)).unwrap());
            }),
        ),
        (
            "whole decrypt rewrite, granularity object",
            n_obj,
            Box::new(|| {
                black_box(protect::rewrite(dec_obj, &ring, black_box(&sealed_obj)).unwrap());
            }),
        ),
        (
            "primitive: GCM-SIV seal 42 B, AAD 35 B (crypto::gcm_siv)",
            1,
            Box::new(|| {
                i += 1;
                let mut nonce = [0u8; 12];
                nonce[..8].copy_from_slice(&i.to_le_bytes());
                black_box(cipher.seal_in_place(&nonce, &aad_new, &mut buf).unwrap());
            }),
        ),
        (
            "primitive: GCM-SIV seal 42 B, AAD 35 B (aes-gcm-siv crate)",
            1,
            Box::new(|| {
                i2 += 1;
                let mut nonce = [0u8; 12];
                nonce[..8].copy_from_slice(&i2.to_le_bytes());
                black_box(
                    reference
                        .encrypt_in_place_detached(Nonce::from_slice(&nonce), &aad_new, &mut buf2)
                        .unwrap(),
                );
            }),
        ),
        // The per-nonce part of every seal (RFC 8452 §4), which a seal
        // cannot share with another nonce's: what one derivation per body
        // instead of per field would save (docs/performance.md).
        (
            "primitive: per-nonce subkeys, 6 AES blocks in one call",
            1,
            Box::new(|| {
                let mut blocks = [aes::Block::default(); 6];
                key_generating_key.encrypt_blocks(black_box(&mut blocks));
                black_box(&blocks);
            }),
        ),
        (
            "primitive: AES-256 key expansion of the per-nonce key",
            1,
            Box::new(|| {
                black_box(aes::Aes256::new(GenericArray::from_slice(black_box(
                    &[7u8; 32],
                ))));
            }),
        ),
        (
            "primitive: base64url of 70 B (base64ct)",
            1,
            Box::new(|| {
                let mut dst = [0u8; 96];
                black_box(
                    Base64UrlUnpadded::encode(black_box(&[9u8; 70]), &mut dst)
                        .unwrap()
                        .len(),
                );
            }),
        ),
        (
            "primitive: D = SHA-256 of a path (per wildcard path)",
            1,
            Box::new(|| {
                black_box(FieldDigest::new(
                    Flow::Request,
                    black_box("$.payload.ShippingAddress.CountryCode"),
                    b"sp-api-orders",
                ));
            }),
        ),
        (
            "primitive: 16 random nonces (one getrandom call)",
            16,
            Box::new(|| {
                let mut n = [0u8; 192];
                getrandom::fill(&mut n).unwrap();
                black_box(&n);
            }),
        ),
    ];

    // Iterations per run: about 20 ms of work per stage and run.
    let runs_n: usize = std::env::var("RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(21);
    let iters: Vec<usize> = stages
        .iter_mut()
        .map(|(_, _, f)| {
            let t = Instant::now();
            let mut k = 0;
            while t.elapsed().as_millis() < 20 {
                f();
                k += 1;
            }
            k.max(3)
        })
        .collect();
    let mut runs: Vec<Vec<f64>> = vec![Vec::new(); stages.len()];
    for _ in 0..runs_n {
        for (s, (_, _, f)) in stages.iter_mut().enumerate() {
            let t = Instant::now();
            for _ in 0..iters[s] {
                f();
            }
            runs[s].push(t.elapsed().as_secs_f64() * 1e6 / iters[s] as f64);
        }
    }
    println!("order: {} bytes, {n} fields sealed per field rule, {n_obj} envelopes with granularity object", body.len());
    println!("| stage | min us | median us | per field (min) |");
    println!("|---|---|---|---|");
    for (s, (name, per, _)) in stages.iter().enumerate() {
        let r = &mut runs[s];
        r.sort_by(|a, b| a.partial_cmp(b).unwrap());
        let (min, med) = (r[0], r[r.len() / 2]);
        let per_field = if *per > 1 {
            format!("{:.2}", min / *per as f64)
        } else {
            String::new()
        };
        println!("| {name} | {min:.2} | {med:.2} | {per_field} |");
    }
}
