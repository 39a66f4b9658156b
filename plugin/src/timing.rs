//! Time spent in each callback, for profiling builds only
//! (`cargo build -p dpp-guard --features callback-timing`, which
//! `make bench-timing` does). A default build compiles every span away.
//!
//! Why it exists: a benchmark says how much a configuration costs, not
//! where. Timed by the host's clock from inside the VM, each span covers the
//! filter's own work plus the host calls it makes (a bare clock crossing
//! costs about 0.1 µs in V8, so the spans are fair). Every
//! [`REPORT_EVERY`] streams the worker logs one line
//!
//! `dpp_timing {"streams":10000,"spans":{"on_log":[54.1,10000],...}}`
//!
//! at warn level: mean microseconds per call and the number of calls since
//! the previous line. `bench/run.py` collects the last line of each
//! configuration into `timing.md`.

use dpp_core::stream::Property;

/// What a span measures.
#[derive(Clone, Copy)]
#[cfg_attr(not(feature = "callback-timing"), allow(dead_code))]
pub enum Span {
    RequestHeaders,
    RequestBody,
    RequestTrailers,
    ResponseHeaders,
    ResponseBody,
    ResponseTrailers,
    /// `on_log` from entry to return.
    Log,
    /// The exchange's log decision: property reads, counts, record build.
    LogDecide,
    /// Sealing the record into the chain.
    LogSeal,
    /// Handing the sealed line to Envoy's filter state.
    LogPublish,
    /// One property read, wherever it happens.
    Property(Property),
}

#[cfg(feature = "callback-timing")]
mod enabled {
    use std::cell::RefCell;

    use super::Span;
    use dpp_core::stream::Property;

    use super::REPORT_EVERY;
    const FIXED: [&str; 10] = [
        "on_request_headers",
        "on_request_body",
        "on_request_trailers",
        "on_response_headers",
        "on_response_body",
        "on_response_trailers",
        "on_log",
        "on_log.decide",
        "on_log.seal",
        "on_log.publish",
    ];
    const SLOTS: usize = FIXED.len() + Property::ALL.len();

    #[derive(Default)]
    struct Totals {
        nanos: Vec<u64>,
        calls: Vec<u64>,
        streams: u64,
    }

    thread_local! {
        static TOTALS: RefCell<Totals> = RefCell::new(Totals {
            nanos: vec![0; SLOTS],
            calls: vec![0; SLOTS],
            streams: 0,
        });
    }

    fn slot(span: Span) -> usize {
        match span {
            Span::Property(p) => {
                FIXED.len() + Property::ALL.iter().position(|q| *q == p).unwrap_or(0)
            }
            Span::RequestHeaders => 0,
            Span::RequestBody => 1,
            Span::RequestTrailers => 2,
            Span::ResponseHeaders => 3,
            Span::ResponseBody => 4,
            Span::ResponseTrailers => 5,
            Span::Log => 6,
            Span::LogDecide => 7,
            Span::LogSeal => 8,
            Span::LogPublish => 9,
        }
    }

    fn name(slot: usize) -> String {
        match FIXED.get(slot) {
            Some(n) => (*n).to_owned(),
            None => Property::ALL
                .get(slot - FIXED.len())
                .map(|p| format!("property {}", p.path().join(".")))
                .unwrap_or_default(),
        }
    }

    pub fn now() -> u64 {
        crate::host::now_unix_nanos().unwrap_or(0)
    }

    pub fn record(span: Span, started: u64) {
        let elapsed = now().saturating_sub(started);
        TOTALS.with(|t| {
            if let Ok(mut t) = t.try_borrow_mut() {
                let i = slot(span);
                t.nanos[i] += elapsed;
                t.calls[i] += 1;
            }
        });
    }

    pub fn stream_done() {
        TOTALS.with(|t| {
            let Ok(mut t) = t.try_borrow_mut() else {
                return;
            };
            t.streams += 1;
            if t.streams < REPORT_EVERY {
                return;
            }
            let mut spans = serde_json::Map::new();
            for i in 0..SLOTS {
                if t.calls[i] > 0 {
                    let mean = t.nanos[i] as f64 / t.calls[i] as f64 / 1000.0;
                    let mean = (mean * 100.0).round() / 100.0;
                    spans.insert(name(i), serde_json::json!([mean, t.calls[i]]));
                }
            }
            let line = serde_json::json!({"streams": t.streams, "spans": spans});
            crate::host::log(crate::host::Level::Warn, &format!("dpp_timing {line}"));
            *t = Totals {
                nanos: vec![0; SLOTS],
                calls: vec![0; SLOTS],
                streams: 0,
            };
        });
    }
}

/// Runs `f`, timing it under `span` in profiling builds.
#[inline(always)]
pub fn timed<T>(span: Span, f: impl FnOnce() -> T) -> T {
    #[cfg(feature = "callback-timing")]
    {
        let started = enabled::now();
        let out = f();
        enabled::record(span, started);
        out
    }
    #[cfg(not(feature = "callback-timing"))]
    {
        let _ = span;
        f()
    }
}

/// Counts a finished stream; every [`REPORT_EVERY`] streams, logs the means.
#[inline(always)]
pub fn stream_done() {
    #[cfg(feature = "callback-timing")]
    enabled::stream_done();
}

/// Streams between two `dpp_timing` lines.
#[cfg_attr(not(feature = "callback-timing"), allow(dead_code))]
pub const REPORT_EVERY: u64 = 10_000;
