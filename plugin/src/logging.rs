//! Logging glue: security events to the plugin log and metrics, access
//! records to Envoy filter state (and optionally the plugin log).
//!
//! One [`LogSink`] per worker VM, shared by its streams. Everything
//! request-derived is scrubbed in `dpp_core` before it gets here.

use std::cell::RefCell;

use dpp_core::access::chain::LogChain;
use dpp_core::events::ACCESS_RECORDS_METRIC;
use dpp_core::{AccessRecord, EventKind, SecurityEvent, Severity};

use crate::host::{self, Level};
use crate::metrics;
use crate::timing::{timed, Span};

/// Filter-state name of the access record: Envoy prints it with
/// `%FILTER_STATE(wasm.dpp_access_log:PLAIN)%`. A single-segment property
/// path is what Envoy turns into `wasm.<name>` filter state.
pub const ACCESS_LOG_PROPERTY: &str = dpp_core::wire::ACCESS_LOG_PROPERTY;

/// Prefix of access records written to the plugin log.
pub const ACCESS_LOG_PREFIX: &str = "dpp_access ";

/// Logs an event as one `dpp_event {json}` line at a level matching its
/// severity.
pub fn log_event(event: &SecurityEvent) {
    let level = match event.severity {
        Severity::Info => Level::Info,
        Severity::Warning => Level::Warn,
        Severity::High => Level::Error,
        Severity::Critical => Level::Critical,
    };
    host::log(level, &event.to_log_line());
}

/// Logs an event and counts it per kind and per severity: events the roots
/// raise (the streams' events come with their counters in the effects).
pub fn emit(event: &SecurityEvent) {
    log_event(event);
    for counter in event.counters() {
        metrics::increment(counter);
    }
}

/// Defines every event counter, so that dashboards read 0 rather than
/// "no data" for kinds that have not happened yet.
pub fn define_metrics() {
    for kind in EventKind::ALL {
        metrics::define(kind.metric_name());
        metrics::define(kind.report_only_metric_name());
    }
    metrics::define(dpp_core::wire::THROTTLED_METRIC);
    for severity in Severity::ALL {
        metrics::define(severity.metric_name());
    }
    metrics::define(ACCESS_RECORDS_METRIC);
}

/// Per-worker logging state: the chain access records are sealed into.
pub struct LogSink {
    chain: RefCell<LogChain>,
    plugin_log: bool,
}

impl LogSink {
    pub fn new(chain: LogChain, plugin_log: bool) -> LogSink {
        LogSink {
            chain: RefCell::new(chain),
            plugin_log,
        }
    }

    /// Seals one request's access record (built and scrubbed by the
    /// exchange) and publishes it; counts it once published.
    pub fn access(&self, record: AccessRecord) {
        // try_borrow_mut: streams of one worker never log concurrently, but
        // a failed borrow must lose a record, not panic.
        let Ok(mut chain) = self.chain.try_borrow_mut() else {
            return;
        };
        let line = timed(Span::LogSeal, || chain.seal(record));
        drop(chain);
        let published = timed(Span::LogPublish, || {
            host::set_property(ACCESS_LOG_PROPERTY, line.as_bytes())
        })
        .is_ok();
        if self.plugin_log {
            host::log(Level::Info, &format!("{ACCESS_LOG_PREFIX}{line}"));
        }
        if published || self.plugin_log {
            metrics::increment(ACCESS_RECORDS_METRIC);
        }
    }
}
