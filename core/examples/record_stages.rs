//! What an access record costs per request, stage by stage: scrubbing its
//! inputs, building it, sealing it into the chain. The request is the
//! benchmark's row (i): an unprotected path without PII, a browser user
//! agent, a client address; "new client" rows give every request another
//! address and user agent (no pseudonym made earlier can be reused).
//!
//! Native: `cargo run --release -p dpp-guard-core --example record_stages`
//! In V8 (the engine Envoy runs the filter in), through Node's WASI:
//! `cargo build --release -p dpp-guard-core --example record_stages --target wasm32-wasip1`
//! `node --no-warnings core/examples/wasi-run.mjs target/wasm32-wasip1/release/examples/record_stages.wasm`
//!
//! Minimum and median of 21 interleaved runs of about 20 ms, microseconds.

use std::hint::black_box;
use std::time::Instant;

use dpp_core::access::chain::LogChain;
use dpp_core::scrub::{PiiKeys, Scrubber};
use dpp_core::{AccessRecord, Actions, LogKey, RequestLogFacts};

const PATH: &str = "/catalog/2022-04-01/items";
const USER_AGENT: &str = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Safari/537.36";

type Stage<'a> = (&'static str, Box<dyn FnMut() + 'a>);

fn main() {
    let key = LogKey::parse(&"ab".repeat(32)).expect("log key");
    let scrubber = Scrubber::new(Some(key.pseudonymizer()), PiiKeys::default());
    let mut chain = LogChain::new("bench".into(), Some(key.chain_key()));
    let facts = RequestLogFacts {
        time_unix_nanos: 1_795_910_400_000_000_000,
        request_id: Some("0f8fad5b-d9cb-469f-a165-70867728950e".into()),
        method: "POST".into(),
        path: PATH.into(),
        status: Some(200),
        code_details: Some("via_upstream".into()),
        route_name: Some("catalog".into()),
        upstream_cluster: Some("upstream".into()),
        duration_nanos: Some(1_234_567),
        request_bytes: Some(4_100),
        response_bytes: Some(180),
        client_address: Some("203.0.113.7:50123".into()),
        headers: vec![("user-agent".into(), USER_AGENT.into())],
        ..RequestLogFacts::default()
    };
    let mut n = 0u32;
    let mut fresh = facts.clone();
    let mut stages: Vec<Stage<'_>> = vec![
        (
            "scrub: path",
            Box::new(|| drop(black_box(scrubber.url(black_box(PATH))))),
        ),
        (
            "scrub: route name (text)",
            Box::new(|| drop(black_box(scrubber.text(black_box("catalog"))))),
        ),
        (
            "scrub: user agent",
            Box::new(|| {
                drop(black_box(
                    scrubber.header("user-agent", black_box(USER_AGENT)),
                ))
            }),
        ),
        (
            "scrub: client address",
            Box::new(|| {
                drop(black_box(
                    scrubber.client_address(black_box("203.0.113.7:50123")),
                ))
            }),
        ),
        (
            "record: build (scrub included)",
            Box::new(|| {
                drop(black_box(AccessRecord::build(
                    &facts,
                    &Actions::default(),
                    &scrubber,
                )))
            }),
        ),
        (
            "record: build + seal into the chain",
            Box::new(|| {
                let record = AccessRecord::build(&facts, &Actions::default(), &scrubber);
                black_box(chain.seal(record));
            }),
        ),
        (
            "record: build, new client each time",
            Box::new(|| {
                n = n.wrapping_add(1);
                fresh.client_address = Some(format!("198.51.{}.{}:4000", n >> 8 & 255, n & 255));
                fresh.headers[0].1 = format!("{USER_AGENT} build/{n}");
                black_box(AccessRecord::build(&fresh, &Actions::default(), &scrubber));
            }),
        ),
    ];
    let mut times: Vec<Vec<f64>> = vec![Vec::new(); stages.len()];
    for _ in 0..21 {
        for (i, (_, f)) in stages.iter_mut().enumerate() {
            // Calibrate to about 20 ms per run.
            let t = Instant::now();
            f();
            let one = t.elapsed().as_secs_f64().max(1e-7);
            let reps = ((0.02 / one) as u32).clamp(1, 200_000);
            let t = Instant::now();
            for _ in 0..reps {
                f();
            }
            times[i].push(t.elapsed().as_secs_f64() * 1e6 / f64::from(reps));
        }
    }
    println!("| stage | min us | median us |\n|---|---|---|");
    for ((name, _), t) in stages.iter().zip(times.iter_mut()) {
        t.sort_by(f64::total_cmp);
        println!("| {name} | {:.2} | {:.2} |", t[0], t[t.len() / 2]);
    }
}
