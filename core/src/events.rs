//! Security events: one JSON object per line, never containing PII.
//!
//! Events carry only policy vocabulary (route names, event kinds, methods,
//! counts). Request paths, hosts, addresses and header values never go in.

use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Info,
    Warning,
    High,
    Critical,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    /// A policy was loaded (configuration change).
    PolicyLoaded,
    /// A policy was refused; the plugin does not start.
    PolicyRejected,
    /// A request was refused by a route's kill switch.
    KillSwitchRefusal,
    /// Upstream guard: the upstream connection had no TLS; request not sent.
    UpstreamPlaintextRefused,
    /// Upstream guard: TLS below the policy minimum; request not sent.
    UpstreamTlsVersionRefused,
    /// Upstream guard: peer certificate does not match the cluster pin.
    UpstreamIdentityRefused,
    /// Upstream guard: no connection within the wait bound; request not sent.
    UpstreamWaitExpired,
    /// Upstream guard: the stream ended while waiting (connect failed).
    UpstreamConnectionGone,
    /// At start: a cluster is exempt from the TLS requirement.
    UpstreamTlsExemption,
    /// At start: downstream plaintext accepted (trusted TLS terminator).
    TrustedTlsTerminator,
    /// A protected route was called without TLS.
    DownstreamPlaintextRefused,
    /// Defence in depth: a plaintext upstream answered; the guard was
    /// missing or bypassed.
    PlaintextUpstreamObserved,
}

impl EventKind {
    pub fn severity(self) -> Severity {
        match self {
            EventKind::PolicyLoaded => Severity::Info,
            EventKind::PolicyRejected => Severity::Critical,
            EventKind::KillSwitchRefusal => Severity::Warning,
            EventKind::UpstreamPlaintextRefused => Severity::High,
            EventKind::UpstreamTlsVersionRefused => Severity::High,
            EventKind::UpstreamIdentityRefused => Severity::High,
            EventKind::UpstreamWaitExpired => Severity::Warning,
            EventKind::UpstreamConnectionGone => Severity::Info,
            EventKind::UpstreamTlsExemption => Severity::Warning,
            EventKind::TrustedTlsTerminator => Severity::Warning,
            EventKind::DownstreamPlaintextRefused => Severity::High,
            EventKind::PlaintextUpstreamObserved => Severity::Critical,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            EventKind::PolicyLoaded => "policy_loaded",
            EventKind::PolicyRejected => "policy_rejected",
            EventKind::KillSwitchRefusal => "kill_switch_refusal",
            EventKind::UpstreamPlaintextRefused => "upstream_plaintext_refused",
            EventKind::UpstreamTlsVersionRefused => "upstream_tls_version_refused",
            EventKind::UpstreamIdentityRefused => "upstream_identity_refused",
            EventKind::UpstreamWaitExpired => "upstream_wait_expired",
            EventKind::UpstreamConnectionGone => "upstream_connection_gone",
            EventKind::UpstreamTlsExemption => "upstream_tls_exemption",
            EventKind::TrustedTlsTerminator => "trusted_tls_terminator",
            EventKind::DownstreamPlaintextRefused => "downstream_plaintext_refused",
            EventKind::PlaintextUpstreamObserved => "plaintext_upstream_observed",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SecurityEvent {
    pub event: EventKind,
    pub severity: Severity,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub route: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

impl SecurityEvent {
    pub fn new(event: EventKind) -> Self {
        SecurityEvent {
            event,
            severity: event.severity(),
            route: None,
            method: None,
            detail: None,
        }
    }

    pub fn route(mut self, route: &str) -> Self {
        self.route = Some(route.to_string());
        self
    }

    /// Only standard method tokens are kept; anything else is PII-unsafe noise.
    pub fn method(mut self, method: &str) -> Self {
        const KNOWN: [&str; 9] = [
            "GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH",
        ];
        self.method = Some(
            KNOWN
                .iter()
                .find(|m| **m == method)
                .map_or("OTHER", |m| m)
                .to_string(),
        );
        self
    }

    /// Free text from the plugin itself (never request data).
    pub fn detail(mut self, detail: impl Into<String>) -> Self {
        self.detail = Some(detail.into());
        self
    }

    /// The event as one log line: a fixed prefix, then a JSON object.
    pub fn to_log_line(&self) -> String {
        format!(
            "{}{}",
            Self::LOG_PREFIX,
            serde_json::to_string(self).unwrap_or_default()
        )
    }

    /// Lines starting with this carry one event; collectors filter on it.
    pub const LOG_PREFIX: &'static str = "dpp_event ";
}
