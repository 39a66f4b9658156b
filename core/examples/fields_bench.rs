//! Native throughput of the field rewrite, beside the serde_json
//! parse-and-serialize floor, on SP-API order bodies.
//!
//! Native: `cargo run --release -p dpp-guard-core --example fields_bench`
//! In V8 (the engine Envoy runs the filter in):
//! `cargo build --release -p dpp-guard-core --example fields_bench --target wasm32-wasip1`
//! `node --no-warnings core/examples/wasi-run.mjs target/wasm32-wasip1/release/examples/fields_bench.wasm`
//! Prints microseconds per body (median of 15 runs of N iterations).

use std::hint::black_box;
use std::time::Instant;

use dpp_core::crypto::Keyring;
use dpp_core::policy::{Direction, Policy};
use dpp_core::protect;

fn order(i: usize) -> serde_json::Value {
    serde_json::json!({
        "AmazonOrderId": format!("902-3159896-{i:07}"), "PurchaseDate": "2026-11-20T17:04:51Z",
        "OrderStatus": "Unshipped", "FulfillmentChannel": "MFN", "NumberOfItemsShipped": 0,
        "OrderTotal": {"CurrencyCode": "USD", "Amount": "64.98"}, "IsPrime": false,
        "BuyerInfo": {"BuyerEmail": format!("buyer{i}@marketplace.example.com"), "BuyerName": "Jane Q. Buyer",
                      "PurchaseOrderNumber": "PO-77-3921"},
        "ShippingAddress": {"Name": "Jane Q. Buyer", "AddressLine1": "1200 Westlake Ave N",
                            "AddressLine2": "Suite 1400", "City": "Seattle", "StateOrRegion": "WA",
                            "PostalCode": "98109-5210", "CountryCode": "US", "Phone": "+1 206-555-0147"},
        "MarketplaceId": "ATVPDKIKX0DER", "ShipmentServiceLevelCategory": "Standard",
        "EarliestShipDate": "2026-11-21T08:00:00Z", "LatestShipDate": "2026-11-22T07:59:59Z",
    })
}

fn body(target: usize) -> Vec<u8> {
    let mut orders = Vec::new();
    loop {
        orders.push(order(orders.len()));
        let doc = serde_json::json!({"payload": {"Orders": orders, "NextToken": "abc"}});
        let bytes = serde_json::to_vec_pretty(&doc).unwrap();
        if bytes.len() >= target {
            return bytes;
        }
    }
}

fn time(iters: usize, mut f: impl FnMut()) -> f64 {
    let mut runs: Vec<f64> = (0..15)
        .map(|_| {
            let t = Instant::now();
            for _ in 0..iters {
                f();
            }
            t.elapsed().as_secs_f64() * 1e6 / iters as f64
        })
        .collect();
    runs.sort_by(|a, b| a.partial_cmp(b).unwrap());
    runs[7]
}

fn main() {
    let policy = Policy::from_json(
        br#"{"version":1,"keys":{"env":"K"},"routes":[{"name":"o",
            "encrypt":[{"direction":"request","preset":"sp-api-orders"}]},
            {"name":"o-dec","decrypt":[{"direction":"request","preset":"sp-api-orders"}]},
            {"name":"scan","encrypt":[{"direction":"request","selectors":["$.nothing.here"]}]}]}"#,
    )
    .unwrap();
    let route = &policy.routes[0];
    let enc = route.fields(Direction::Request).unwrap();
    // The hop that opens what `enc` sealed: same direction (authenticated).
    let dec = policy.routes[1].fields(Direction::Request).unwrap();
    let scan = policy.routes[2].fields(Direction::Request).unwrap();
    let ring = Keyring::parse("k1=AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8").unwrap();

    println!("| body | fields | serde_json parse+serialize | scan only | splice encrypt | splice decrypt | encrypt / floor | per field (enc) |");
    println!("|---|---|---|---|---|---|---|---|");
    for size in [4 * 1024, 16 * 1024, 256 * 1024] {
        let b = body(size);
        let sealed = protect::rewrite(enc, &ring, &b).unwrap().unwrap();
        let fields = sealed.windows(6).filter(|w| w == b"\"dpg1.").count();
        let iters = (2_000_000 / b.len()).max(3);
        let floor = time(iters, || {
            let v: serde_json::Value = serde_json::from_slice(black_box(&b)).unwrap();
            black_box(serde_json::to_vec(&v).unwrap());
        });
        let e = time(iters, || {
            black_box(protect::rewrite(enc, &ring, black_box(&b)).unwrap());
        });
        let d = time(iters, || {
            black_box(protect::rewrite(dec, &ring, black_box(&sealed)).unwrap());
        });
        // Scan alone: a selector that matches nothing (validates every byte).
        let sc = time(iters, || {
            black_box(protect::rewrite(scan, &ring, black_box(&b)).unwrap());
        });
        println!(
            "| {} KiB | {fields} | {floor:.1} us | {sc:.1} us | {e:.1} us | {d:.1} us | {:.2}x | {:.2} us |",
            b.len() / 1024,
            e / floor,
            e / fields as f64
        );
    }
}
