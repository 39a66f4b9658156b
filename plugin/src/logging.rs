//! Logging glue: security events to the plugin log and metrics, access
//! records to Envoy filter state (and optionally the plugin log).
//!
//! One [`LogSink`] per worker VM, shared by its streams. Everything
//! request-derived is scrubbed in `dpp_core` before it gets here.

use std::cell::RefCell;
use std::collections::HashMap;

use dpp_core::access::chain::LogChain;
use dpp_core::events::ACCESS_RECORDS_METRIC;
use dpp_core::{
    AccessRecord, Actions, EventKind, RequestLogFacts, Scrubber, SecurityEvent, Severity,
};
use proxy_wasm::hostcalls;
use proxy_wasm::types::{LogLevel, MetricType};

use crate::log;

/// Filter-state name of the access record: Envoy prints it with
/// `%FILTER_STATE(wasm.dpp_access_log:PLAIN)%`. A single-segment property
/// path is what Envoy turns into `wasm.<name>` filter state.
pub const ACCESS_LOG_PROPERTY: &str = "dpp_access_log";

/// Prefix of access records written to the plugin log.
pub const ACCESS_LOG_PREFIX: &str = "dpp_access ";

/// Counters defined at configure time; a metric that could not be defined
/// is simply not counted (a lost count must not fail a request).
#[derive(Default)]
struct Metrics {
    by_kind: HashMap<EventKind, u32>,
    by_severity: HashMap<Severity, u32>,
    access_records: Option<u32>,
}

impl Metrics {
    fn define() -> Metrics {
        let counter = |name: &str| hostcalls::define_metric(MetricType::Counter, name).ok();
        Metrics {
            by_kind: EventKind::ALL
                .iter()
                .filter_map(|k| Some((*k, counter(&k.metric_name())?)))
                .collect(),
            by_severity: Severity::ALL
                .iter()
                .filter_map(|s| Some((*s, counter(&s.metric_name())?)))
                .collect(),
            access_records: counter(ACCESS_RECORDS_METRIC),
        }
    }

    fn bump(id: Option<&u32>) {
        if let Some(id) = id {
            let _ = hostcalls::increment_metric(*id, 1);
        }
    }
}

/// Per-worker logging state.
pub struct LogSink {
    pub scrubber: Scrubber,
    chain: RefCell<LogChain>,
    plugin_log: bool,
    pub request_headers: Vec<String>,
    pub principal_header: Option<String>,
    metrics: Metrics,
}

impl LogSink {
    pub fn new(
        scrubber: Scrubber,
        chain: LogChain,
        plugin_log: bool,
        request_headers: Vec<String>,
        principal_header: Option<String>,
    ) -> LogSink {
        LogSink {
            scrubber,
            chain: RefCell::new(chain),
            plugin_log,
            request_headers,
            principal_header,
            metrics: Metrics::define(),
        }
    }

    /// Logs an event as one `dpp_event {json}` line at a level matching its
    /// severity, and counts it.
    pub fn emit(&self, event: &SecurityEvent) {
        let level = match event.severity {
            Severity::Info => LogLevel::Info,
            Severity::Warning => LogLevel::Warn,
            Severity::High => LogLevel::Error,
            Severity::Critical => LogLevel::Critical,
        };
        log(level, &event.to_log_line());
        Metrics::bump(self.metrics.by_kind.get(&event.event));
        Metrics::bump(self.metrics.by_severity.get(&event.severity));
    }

    /// Logs free text that may hold request data (an error message quoting
    /// a header, a JSON parse error) after scrubbing it. Plugin code logs
    /// through this or through [`LogSink::emit`], never raw request data.
    #[allow(dead_code)] // used by features that log request-derived text
    pub fn note(&self, level: LogLevel, text: &str) {
        log(level, &self.scrubber.text(text));
    }

    /// Builds, seals and publishes one request's access record.
    pub fn access(&self, facts: &RequestLogFacts, actions: &Actions) {
        let record = AccessRecord::build(facts, actions, &self.scrubber);
        // try_borrow_mut: streams of one worker never log concurrently, but
        // a failed borrow must lose a record, not panic.
        let Ok(mut chain) = self.chain.try_borrow_mut() else {
            return;
        };
        let line = chain.seal(record);
        drop(chain);
        let _ = hostcalls::set_property(vec![ACCESS_LOG_PROPERTY], Some(line.as_bytes()));
        if self.plugin_log {
            log(LogLevel::Info, &format!("{ACCESS_LOG_PREFIX}{line}"));
        }
        Metrics::bump(self.metrics.access_records.as_ref());
    }
}
