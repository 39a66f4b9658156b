//! How fast the harness runs dpp_guard.wasm: one VM, N streams of each kind
//! (a kill-switched route answered locally, a no_store route through to a
//! response, an unprotected route). A measurement, not a test.
//!
//!   make build && cargo run -p dpp-guard-harness --example throughput -- 20000

use std::time::Instant;

use harness::{LogLevel, Node, Plugin, Vm, VmConfig};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let n: u32 = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(10_000);
    let t = Instant::now();
    let plugin = Plugin::load("target/wasm32-wasip1/release/dpp_guard.wasm")?;
    let compile = t.elapsed();
    let policy = r#"{"version":1,"routes":[
        {"name":"mws","match":{"path":{"prefix":"/mws/"}},"kill_switch":true},
        {"name":"orders","match":{"path":{"prefix":"/orders/"}},"no_store":true}]}"#;
    let t = Instant::now();
    let mut vm = Vm::start(
        &plugin,
        &Node::new(),
        VmConfig::new()
            .plugin_config(policy)
            .root_id(dpp_core::wire::ROOT_ID)
            .log_level(LogLevel::Error)
            .stream_property("connection.tls_version", "TLSv1.3"),
    )?;
    let start = t.elapsed();
    for (label, path) in [
        ("kill switch (local reply)", "/mws/x"),
        ("no_store (full exchange)", "/orders/1"),
        ("unprotected (full exchange)", "/catalog/1"),
    ] {
        let t = Instant::now();
        for _ in 0..n {
            let id = vm.open_stream()?;
            vm.request_headers(
                id,
                &[
                    (":method", "GET"),
                    (":path", path),
                    (":authority", "a"),
                    (":scheme", "https"),
                ],
                true,
            )?;
            if vm.stream(id).is_some_and(|s| s.local_reply().is_none()) {
                vm.response_headers(id, &[(":status", "200"), ("content-length", "0")], true)?;
            }
            vm.finish(id)?;
        }
        let per = t.elapsed() / n;
        println!(
            "{label:30} {per:>10.2?} per stream  ({:.0} streams/s)",
            1.0 / per.as_secs_f64()
        );
    }
    println!("compile {compile:.2?}, VM start + configure {start:.2?}");
    Ok(())
}
