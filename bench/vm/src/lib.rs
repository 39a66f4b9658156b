//! Stage microbenchmarks of dpp-guard's body path, run inside a Wasm VM.
//!
//! The host (bench/vm.py, wasmtime) writes a body into the module's memory,
//! then calls `bench_stage(stage, iterations)`, which runs one stage that
//! many times and returns the elapsed nanoseconds measured inside the VM
//! (WASI monotonic clock), so host-call overhead is not in the figures.
//! Stage 0 is the floor every JSON rewrite is compared with: serde_json
//! parse into a `Value` and serialize.

use std::cell::RefCell;
use std::hint::black_box;
use std::time::Instant;

thread_local! {
    static BODY: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// Stage numbers, shared with bench/vmconfigs.py.
const FLOOR: u32 = 0;

/// Makes room for a body of `len` bytes and returns where to write it.
#[no_mangle]
pub extern "C" fn bench_body(len: u32) -> *mut u8 {
    BODY.with(|b| {
        let mut b = b.borrow_mut();
        b.clear();
        b.resize(len as usize, 0);
        b.as_mut_ptr()
    })
}

/// Runs `stage` `iterations` times; elapsed nanoseconds, or u64::MAX when
/// the stage is unknown or failed (the host refuses such a figure).
#[no_mangle]
pub extern "C" fn bench_stage(stage: u32, iterations: u32) -> u64 {
    BODY.with(|b| {
        let body = b.borrow();
        let start = Instant::now();
        for _ in 0..iterations {
            let ok = match stage {
                FLOOR => floor(&body),
                _ => false,
            };
            if !ok {
                return u64::MAX;
            }
        }
        u64::try_from(start.elapsed().as_nanos()).unwrap_or(u64::MAX)
    })
}

fn floor(body: &[u8]) -> bool {
    serde_json::from_slice::<serde_json::Value>(body)
        .and_then(|v| serde_json::to_vec(&v))
        .map(|out| !black_box(out).is_empty())
        .unwrap_or(false)
}
