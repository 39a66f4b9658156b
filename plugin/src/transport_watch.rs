//! Encryption in transit, as seen by the downstream policy filter:
//! - protected routes refuse requests that arrived without TLS;
//! - defence in depth: a response or log entry from an upstream connection
//!   without TLS means the upstream guard was missing or bypassed (for
//!   example a cluster with its own `http_filters`). It is too late to stop
//!   that request; it is counted and reported so the hole gets fixed.

use crate::upstream_guard::property;
use dpp_core::policy::{ClusterName, Route};
use dpp_core::{LocalReply, Policy, SecurityEvent};

/// Counter of plaintext upstream exchanges seen after the fact
/// (`wasmcustom.dpp_guard.plaintext_upstream` in Envoy's /stats).
pub const PLAINTEXT_METRIC: &str = "dpp_guard.plaintext_upstream";

/// The refusal for a protected route reached without TLS, if any.
pub fn downstream_refusal(
    policy: &Policy,
    route: &Route,
    method: &str,
) -> Option<(LocalReply, SecurityEvent)> {
    let tls_version = property(&["connection", "tls_version"]);
    policy.downstream_refusal(route, tls_version.as_deref(), method)
}

/// Looks at the upstream connection once per stream, at response headers
/// and again at log time (a stream reset before any response only shows up
/// there).
#[derive(Default)]
pub struct PlaintextWatch {
    reported: bool,
}

impl PlaintextWatch {
    /// True when this call reported the plaintext exchange.
    pub fn check(&mut self, policy: &Policy, phase: &str) -> bool {
        if self.reported {
            return false;
        }
        let connected = property(&["upstream", "local_address"]).is_some();
        let tls_version = property(&["upstream", "tls_version"]);
        let cluster = property(&["xds", "cluster_name"]).map(ClusterName::new);
        let details = property(&["response", "code_details"]);
        if let Some(event) = policy.plaintext_upstream_seen(
            cluster.as_ref(),
            connected,
            tls_version.as_deref(),
            details.as_deref(),
            phase,
        ) {
            self.reported = true;
            crate::logging::emit(&event);
            count_plaintext();
            return true;
        }
        false
    }
}

fn count_plaintext() {
    crate::metrics::increment(PLAINTEXT_METRIC);
}
