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
pub const PLAINTEXT_METRIC: &str = dpp_core::wire::PLAINTEXT_UPSTREAM_METRIC;

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
///
/// Performance: this runs on every request, protected or not, so it reads
/// properties lazily (each read is a host call plus an allocation callback
/// into the VM) and stops watching once the answer cannot change: a
/// response that came from a TLS connection, or from a plaintext one that
/// is exempt or already reported. On a TLS upstream that is two reads per
/// request instead of eight.
#[derive(Default)]
pub struct PlaintextWatch {
    settled: bool,
}

impl PlaintextWatch {
    /// True when this call reported the plaintext exchange.
    pub fn check(&mut self, policy: &Policy, phase: &str) -> bool {
        if self.settled {
            return false;
        }
        // No upstream connection (yet): nothing went upstream in clear.
        if property(&["upstream", "local_address"]).is_none() {
            return false;
        }
        if property(&["upstream", "tls_version"]).is_some() {
            // Encrypted; the version itself is the upstream guard's business.
            self.settled = true;
            return false;
        }
        let details = property(&["response", "code_details"]);
        let cluster = property(&["xds", "cluster_name"]).map(ClusterName::new);
        if let Some(event) =
            policy.plaintext_upstream_seen(cluster.as_ref(), true, None, details.as_deref(), phase)
        {
            self.settled = true;
            crate::logging::emit(&event);
            count_plaintext();
            return true;
        }
        if details.as_deref() == Some("via_upstream") {
            // The response came over this (exempt) connection: a later look
            // sees the same connection and the same exemption.
            self.settled = true;
        }
        false
    }
}

fn count_plaintext() {
    crate::metrics::increment(PLAINTEXT_METRIC);
}
