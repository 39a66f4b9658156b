//! Names that cross a boundary: Envoy configuration, filter state, headers
//! and metrics that the plugin, the CLI, the harness and the shipped
//! configurations must spell the same way. Defined once here.

/// Root id of the downstream policy filter (`dpp_guard`).
pub const ROOT_ID: &str = "dpp_guard";
/// Root id of the upstream TLS guard (same .wasm, the router's upstream filters).
pub const UPSTREAM_GUARD_ROOT_ID: &str = "dpp_upstream_guard";

/// Filter-state property the access record is published under; Envoy's
/// access loggers print it as `%FILTER_STATE(wasm.dpp_access_log:PLAIN)%`.
pub const ACCESS_LOG_PROPERTY: &str = "dpp_access_log";
/// The same, as Envoy's access-log format names it.
pub const ACCESS_LOG_FILTER_STATE: &str = "wasm.dpp_access_log";
/// The access-log format operator that prints the scrubbed record, the one
/// piece of request data an access log may print (docs/logging.md).
pub const ACCESS_LOG_FORMAT_OPERATOR: &str = "%FILTER_STATE(wasm.dpp_access_log:PLAIN)%";

/// `vm_id` of the shipped configurations: both filters share one VM per worker.
pub const VM_ID: &str = "dpp_guard";

/// Marks a message whose body dpp_guard holds, for the hold filters of
/// envoy/dpp-guard-fields.yaml. Only dpp_guard sets it.
pub const HOLD_HEADER: &str = "x-dpp-guard-hold";

/// Prefix of every metric the module defines (`dpp_guard.…` in Envoy,
/// `dpp_guard_…` in Prometheus).
pub const METRIC_PREFIX: &str = "dpp_guard";

/// Metrics of the upstream TLS guard.
pub mod upstream_metrics {
    pub const ALLOWED_POOLED: &str = "dpp_guard.upstream.allowed_pooled";
    pub const ALLOWED_NEW: &str = "dpp_guard.upstream.allowed_new_connection";
    pub const REFUSED_POOLED: &str = "dpp_guard.upstream.refused_pooled";
    pub const REFUSED_NEW: &str = "dpp_guard.upstream.refused_new_connection";
    pub const WAIT_EXPIRED: &str = "dpp_guard.upstream.wait_expired";
    pub const GONE: &str = "dpp_guard.upstream.connection_gone";
    /// Report mode: connections the guard would have refused, allowed.
    pub const REPORTED: &str = "dpp_guard.upstream.report_only";
}

/// Counts requests answered 429 because their client is over a route's limit.
pub const THROTTLED_METRIC: &str = "dpp_guard.throttled";

/// Counts requests that reached a plaintext upstream the guard did not stop.
pub const PLAINTEXT_UPSTREAM_METRIC: &str = "dpp_guard.plaintext_upstream";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metric_names_share_the_prefix() {
        let names = [
            upstream_metrics::ALLOWED_POOLED,
            upstream_metrics::ALLOWED_NEW,
            upstream_metrics::REFUSED_POOLED,
            upstream_metrics::REFUSED_NEW,
            upstream_metrics::WAIT_EXPIRED,
            upstream_metrics::GONE,
            upstream_metrics::REPORTED,
            PLAINTEXT_UPSTREAM_METRIC,
            THROTTLED_METRIC,
        ];
        for n in names {
            assert!(n.starts_with(&format!("{METRIC_PREFIX}.")), "{n}");
        }
        assert_eq!(
            ACCESS_LOG_FILTER_STATE,
            format!("wasm.{ACCESS_LOG_PROPERTY}")
        );
        assert_eq!(
            ACCESS_LOG_FORMAT_OPERATOR,
            format!("%FILTER_STATE({ACCESS_LOG_FILTER_STATE}:PLAIN)%")
        );
    }
}
