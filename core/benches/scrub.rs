//! Scrubber throughput: `cargo bench -p dpp-guard-core --bench scrub`.
//!
//! A plain timing loop (no harness dependency): prints ns per call for the
//! inputs the filter scrubs on every request.

use std::hint::black_box;
use std::time::Instant;

use dpp_core::access::chain::LogChain;
use dpp_core::scrub::{PiiKeys, Scrubber};
use dpp_core::{AccessRecord, Actions, LogKey, RequestLogFacts};

fn bench(name: &str, iters: u32, mut f: impl FnMut()) {
    for _ in 0..iters / 10 {
        f();
    }
    let start = Instant::now();
    for _ in 0..iters {
        f();
    }
    let ns = start.elapsed().as_nanos() / u128::from(iters);
    println!("{name:<44} {ns:>8} ns/call");
}

fn main() {
    let key = LogKey::parse(&"42".repeat(32)).expect("valid bench key");
    let keyed = Scrubber::new(Some(key.pseudonymizer()), PiiKeys::default());
    let clean = "/orders/v0/orders/902-3159896-1390916/orderItems?MarketplaceIds=ATVPDKIKX0DER&NextToken=abc";
    let pii = "/orders/v0/orders?BuyerEmail=jane.doe%40example.com&MarketplaceIds=ATVPDKIKX0DER&Phone=%2B12065550142&ip=10.1.2.3";
    let ua = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Safari/537.36";
    let text = "request from 203.0.113.7 for buyer jane@example.com card 4111 1111 1111 1111 tel +1 206-555-0142";
    bench("url, clean (kept byte for byte)", 200_000, || {
        black_box(keyed.url(black_box(clean)));
    });
    bench("url, e-mail + phone + ip, pseudonyms", 200_000, || {
        black_box(keyed.url(black_box(pii)));
    });
    bench("header user-agent (pseudonym)", 200_000, || {
        black_box(keyed.header("user-agent", black_box(ua)));
    });
    bench("free text with four detections", 200_000, || {
        black_box(keyed.text(black_box(text)));
    });
    bench("client address pseudonym", 200_000, || {
        black_box(keyed.client_address(black_box("203.0.113.7:50123")));
    });
    // What on_log does per request, host calls excluded: build the record
    // from raw facts (scrubbing path, client, two headers) and seal it.
    let facts = RequestLogFacts {
        time_unix_nanos: 1_795_910_400_000_000_000,
        request_id: Some("0f8fad5b-d9cb-469f-a165-70867728950e".into()),
        method: "GET".into(),
        path: pii.into(),
        status: Some(200),
        route_name: Some("orders".into()),
        upstream_cluster: Some("sp_api".into()),
        client_address: Some("203.0.113.7:50123".into()),
        headers: vec![
            ("user-agent".into(), ua.into()),
            ("authorization".into(), "Bearer abc.def".into()),
        ],
        ..RequestLogFacts::default()
    };
    let mut chain = LogChain::new("bench".into(), Some(key.chain_key()));
    bench("access record: build + seal (PII path)", 100_000, || {
        let record = AccessRecord::build(black_box(&facts), &Actions::default(), &keyed);
        black_box(chain.seal(record));
    });
}
