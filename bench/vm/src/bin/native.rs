//! The same stages as the Wasm module, natively (x86-64 with AES-NI where
//! the CPU has it): `native BODY_FILE...` prints one JSON line per stage and
//! body, `{"stage":N,"file":...,"bytes":N,"median_ns":N}`. Keys come from
//! `DPP_BENCH_KEYS`, as in the VM.

use std::time::Duration;

fn main() {
    let budget = std::env::var("BENCH_NATIVE_BUDGET_MS")
        .ok()
        .and_then(|v| v.parse().ok())
        .map_or(Duration::from_millis(200), Duration::from_millis);
    for file in std::env::args().skip(1) {
        let Ok(body) = std::fs::read(&file) else {
            eprintln!("cannot read {file}");
            std::process::exit(2);
        };
        bench_vm::set_body(&body);
        let rc = bench_vm::bench_prepare();
        if rc != 0 {
            eprintln!("prepare failed ({rc}) for {file}");
            std::process::exit(1);
        }
        for &stage in bench_vm::STAGES {
            let one = bench_vm::bench_stage(stage, 1);
            if one == u64::MAX {
                eprintln!("stage {stage} failed for {file}");
                std::process::exit(1);
            }
            let rounds = 7u64;
            let iters = (budget.as_nanos() as u64 / one.max(1) / rounds).clamp(1, 1_000_000);
            let mut per: Vec<u64> = (0..rounds)
                .map(|_| bench_vm::bench_stage(stage, iters as u32) / iters)
                .collect();
            per.sort_unstable();
            let median = per.get(per.len() / 2).copied().unwrap_or(0);
            println!(
                "{{\"stage\":{stage},\"file\":{file:?},\"bytes\":{},\"median_ns\":{median}}}",
                body.len()
            );
        }
    }
}
