//! Logging glue: security events to the plugin log and metrics, access
//! records to Envoy filter state (and optionally the plugin log).
//!
//! One [`LogSink`] per worker VM, shared by its streams. Everything
//! request-derived is scrubbed in `dpp_core` before it gets here.

use std::cell::RefCell;

use dpp_core::access::chain::LogChain;
use dpp_core::events::ACCESS_RECORDS_METRIC;
use dpp_core::{
    AccessRecord, Actions, EventKind, RequestLogFacts, Scrubber, SecurityEvent, Severity,
};
use proxy_wasm::hostcalls;
use proxy_wasm::types::LogLevel;

use crate::{log, metrics};

/// Filter-state name of the access record: Envoy prints it with
/// `%FILTER_STATE(wasm.dpp_access_log:PLAIN)%`. A single-segment property
/// path is what Envoy turns into `wasm.<name>` filter state.
pub const ACCESS_LOG_PROPERTY: &str = dpp_core::wire::ACCESS_LOG_PROPERTY;

/// Prefix of access records written to the plugin log.
pub const ACCESS_LOG_PREFIX: &str = "dpp_access ";

/// Logs an event as one `dpp_event {json}` line at a level matching its
/// severity, and counts it per kind and per severity. Every root (the
/// policy filter and the upstream guard) reports events through this.
pub fn emit(event: &SecurityEvent) {
    let level = match event.severity {
        Severity::Info => LogLevel::Info,
        Severity::Warning => LogLevel::Warn,
        Severity::High => LogLevel::Error,
        Severity::Critical => LogLevel::Critical,
    };
    log(level, &event.to_log_line());
    metrics::increment(event.event.metric_name());
    metrics::increment(event.severity.metric_name());
}

/// Defines every event counter, so that dashboards read 0 rather than
/// "no data" for kinds that have not happened yet.
pub fn define_metrics() {
    for kind in EventKind::ALL {
        metrics::define(kind.metric_name());
    }
    for severity in Severity::ALL {
        metrics::define(severity.metric_name());
    }
    metrics::define(ACCESS_RECORDS_METRIC);
}

/// Per-worker logging state.
pub struct LogSink {
    /// Free text that may hold request data (an error quoting a header or
    /// a body) goes through `scrubber.text()` before any log call.
    pub scrubber: Scrubber,
    chain: RefCell<LogChain>,
    plugin_log: bool,
    pub request_headers: Vec<String>,
    pub principal_header: Option<String>,
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
        }
    }

    /// Reports a security event (see [`emit`]).
    pub fn emit(&self, event: &SecurityEvent) {
        emit(event);
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
        metrics::increment(ACCESS_RECORDS_METRIC);
    }
}
