//! Security events: one JSON object per line, never containing PII.
//!
//! Events carry only policy vocabulary (route names, event kinds, methods,
//! counts, digests, request ids). Request paths, hosts, addresses and header
//! values never go in; free text passes through the scrubber first.
//!
//! The taxonomy is one table ([`event_kinds!`]): adding a kind is one line
//! (name, severity, category, description), and the metric, the docs table
//! (`EventKind::ALL`) and the JSON name follow from it.

use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Info,
    Warning,
    High,
    Critical,
}

impl Severity {
    pub const ALL: [Severity; 4] = [
        Severity::Info,
        Severity::Warning,
        Severity::High,
        Severity::Critical,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Warning => "warning",
            Severity::High => "high",
            Severity::Critical => "critical",
        }
    }

    /// Counter of all events of this severity (see docs/logging.md).
    pub fn metric_name(self) -> &'static str {
        match self {
            Severity::Info => "dpp_guard.events_by_severity.info",
            Severity::Warning => "dpp_guard.events_by_severity.warning",
            Severity::High => "dpp_guard.events_by_severity.high",
            Severity::Critical => "dpp_guard.events_by_severity.critical",
        }
    }
}

/// Incident-response category of an event (docs/logging.md maps each to
/// the policy's incident types).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Category {
    /// The plugin's configuration changed or was refused.
    Configuration,
    /// A request was refused by a control.
    Refusal,
    /// Field encryption or decryption failed (used by the encryption kinds).
    Crypto,
    /// A connection did not meet transport requirements.
    Transport,
    /// The logging pipeline itself is degraded.
    Logging,
    /// An alarm of the monitoring controls (canaries, rates, volumes,
    /// unauthorized bursts).
    Monitoring,
    /// Access management: principals, roles, address allowlists, lockout.
    Access,
}

/// Prefix of every metric the plugin defines. Envoy shows them in /stats
/// as `wasmcustom.<name>` and in /stats/prometheus with dots turned into
/// underscores (`dpp_guard_events_kill_switch_refusal`).
pub const METRIC_PREFIX: &str = crate::wire::METRIC_PREFIX;

macro_rules! event_kinds {
    ($( $(#[$doc:meta])* $variant:ident = $name:literal, $sev:ident, $cat:ident; )*) => {
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
        pub enum EventKind {
            $( $(#[$doc])* #[serde(rename = $name)] $variant, )*
        }

        impl EventKind {
            /// Every kind, in table order.
            pub const ALL: &'static [EventKind] = &[$(EventKind::$variant),*];

            pub fn name(self) -> &'static str {
                match self { $(EventKind::$variant => $name,)* }
            }

            pub fn severity(self) -> Severity {
                match self { $(EventKind::$variant => Severity::$sev,)* }
            }

            pub fn category(self) -> Category {
                match self { $(EventKind::$variant => Category::$cat,)* }
            }

            /// Counter of this kind's events (`dpp_guard.events.<name>`),
            /// in both modes.
            pub fn metric_name(self) -> &'static str {
                match self { $(EventKind::$variant => concat!("dpp_guard.events.", $name),)* }
            }

            /// Counter of this kind's events raised in report-only mode
            /// (`dpp_guard.report_only.<name>`): what enforcing would
            /// have refused.
            pub fn report_only_metric_name(self) -> &'static str {
                match self { $(EventKind::$variant => concat!("dpp_guard.report_only.", $name),)* }
            }
        }
    };
}

event_kinds! {
    /// A policy was loaded: a configuration change, with the policy's SHA-256.
    PolicyLoaded = "policy_loaded", Info, Configuration;
    /// A policy was refused; the plugin does not start (Envoy answers 5xx).
    PolicyRejected = "policy_rejected", Critical, Configuration;
    /// A request was refused by a route's kill switch.
    KillSwitchRefusal = "kill_switch_refusal", Warning, Refusal;
    /// A request path with no single meaning (or not in normal form, under
    /// `requests.non_normal_path: reject`) was refused; `detail` says why.
    AmbiguousPath = "ambiguous_path", Warning, Refusal;
    /// A request no route matches was refused (`requests.unmatched: deny`).
    UnmatchedRequest = "unmatched_request", Warning, Refusal;
    /// Upstream guard: the upstream connection had no TLS; request not sent.
    UpstreamPlaintextRefused = "upstream_plaintext_refused", High, Transport;
    /// Upstream guard: TLS below the policy minimum; request not sent.
    UpstreamTlsVersionRefused = "upstream_tls_version_refused", High, Transport;
    /// Upstream guard: peer certificate does not match the cluster pin.
    UpstreamIdentityRefused = "upstream_identity_refused", High, Transport;
    /// Upstream guard: no connection within the wait bound; request not sent.
    UpstreamWaitExpired = "upstream_wait_expired", Warning, Transport;
    /// Upstream guard: the stream ended while waiting (connect failed).
    UpstreamConnectionGone = "upstream_connection_gone", Info, Transport;
    /// At start: a cluster is exempt from the TLS requirement.
    UpstreamTlsExemption = "upstream_tls_exemption", Warning, Configuration;
    /// At start: downstream plaintext accepted (trusted TLS terminator).
    TrustedTlsTerminator = "trusted_tls_terminator", Warning, Configuration;
    /// A protected route was called without TLS.
    DownstreamPlaintextRefused = "downstream_plaintext_refused", High, Transport;
    /// Defence in depth: a plaintext upstream answered; the guard was
    /// missing or bypassed.
    PlaintextUpstreamObserved = "plaintext_upstream_observed", Critical, Transport;
    /// The log key is missing or malformed: logs carry placeholders instead
    /// of pseudonyms and access records carry no chain MAC.
    LogKeyUnavailable = "log_key_unavailable", Warning, Logging;
    /// The policy takes its keys from the plugin configuration (testing
    /// only); logged at every start.
    InlineKeysInUse = "inline_keys_in_use", Warning, Configuration;
    /// A protected body exceeded the route's `body.max_bytes`.
    BodyTooLarge = "body_too_large", Warning, Refusal;
    /// A protected body is not valid JSON.
    MalformedBody = "malformed_body", Warning, Refusal;
    /// A protected body has a member whose name equals a selected name
    /// under Unicode case folding but not exactly (or a context field twice):
    /// readers that fold names would bind it to the protected field.
    AmbiguousMember = "ambiguous_member", High, Refusal;
    /// A value was selected in a record that lacks a field its envelope is
    /// bound to (`context_fields`); nothing was forwarded.
    ContextFieldMissing = "context_field_missing", Warning, Refusal;
    /// A protected body is not JSON by its content type.
    UnsupportedContentType = "unsupported_content_type", Warning, Refusal;
    /// A protected body is compressed (Content-Encoding other than identity).
    UnsupportedContentEncoding = "unsupported_content_encoding", Warning, Refusal;
    /// A field under a decrypt rule held no valid envelope: tampered,
    /// truncated, moved, under an unknown key, or a plain value.
    EnvelopeRejected = "envelope_rejected", High, Crypto;
    /// Sealing a field failed (random source); nothing was forwarded.
    EncryptionFailed = "encryption_failed", High, Crypto;
    /// The proxy could not hand over or change what a decision needs (a
    /// header map, a body, a property): the stream was refused, or reset if
    /// even the refusal failed; at log time the record lacks that fact.
    HostCallFailed = "host_call_failed", High, Refusal;
    /// A canary record (a value only an intruder would ask for) was in a
    /// request path, query or selected JSON field; `detail` names the
    /// canary's label, never its value.
    CanaryAccessed = "canary_accessed", Critical, Monitoring;
    /// A client exceeded a route's `limits.requests` in one window (raised
    /// once per window).
    RateAnomaly = "rate_anomaly", High, Monitoring;
    /// A client exceeded a route's `limits.fields_revealed` or
    /// `limits.response_bytes` in one window (once per window).
    VolumeAnomaly = "volume_anomaly", High, Monitoring;
    /// A client got `monitoring.unauthorized_burst.count` 401/403 answers
    /// within the window (once per window).
    UnauthorizedBurst = "unauthorized_burst", High, Monitoring;
    /// A route that requires a principal was called without one (401).
    PrincipalRequired = "principal_required", Warning, Access;
    /// A generic, shared or default identity (root, admin, a default
    /// service account, a policy `generic` pattern) was refused (403).
    GenericIdentityRefused = "generic_identity_refused", High, Access;
    /// The caller holds none of the roles the route admits (403).
    AccessDenied = "access_denied", Warning, Access;
    /// The client address is outside the route's `allow_cidrs`, or could
    /// not be determined (403).
    ClientAddressRefused = "client_address_refused", Warning, Access;
    /// A request of a locked-out principal (or address) was refused (403
    /// with `Retry-After`).
    PrincipalLockedOut = "principal_locked_out", Warning, Access;
    /// A principal (or address) reached the lockout count: locked out for
    /// the policy's duration, on every worker of this proxy.
    LockoutStarted = "lockout_started", High, Access;
    /// A client sent the trusted principal header on a connection that is
    /// not the trusted hop: the copy was removed before the request went on.
    UntrustedPrincipalHeader = "untrusted_principal_header", High, Access;
}

/// Counter of access records written (one per request the filter saw).
pub const ACCESS_RECORDS_METRIC: &str = "dpp_guard.access_records";

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SecurityEvent {
    pub event: EventKind,
    pub severity: Severity,
    pub category: Category,
    /// Envoy's `x-request-id`, to join the event with its access record.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub route: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
    /// SHA-256 (hex) of the policy document, for configuration changes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub policy_sha256: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// Whom the event is about: the keyed pseudonym of the principal (or of
    /// the client address when there is none), never the clear value; on
    /// access and monitoring events.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    /// Report-only mode: the control would have acted (refused, throttled,
    /// blocked) but let the request pass.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub report_only: bool,
}

impl SecurityEvent {
    pub fn new(event: EventKind) -> Self {
        SecurityEvent {
            event,
            severity: event.severity(),
            category: event.category(),
            request_id: None,
            route: None,
            method: None,
            policy_sha256: None,
            detail: None,
            subject: None,
            report_only: false,
        }
    }

    pub fn route(mut self, route: &str) -> Self {
        self.route = Some(route.to_string());
        self
    }

    /// Only standard method tokens are kept; anything else is PII-unsafe noise.
    pub fn method(mut self, method: &str) -> Self {
        self.method = Some(known_method(method).to_string());
        self
    }

    /// Request ids are generated by Envoy (UUIDs) but a client may send its
    /// own; anything that is not a plain token is dropped.
    pub fn request_id(mut self, id: &str) -> Self {
        self.request_id = safe_request_id(id).map(str::to_string);
        self
    }

    /// The request id as the access record shows it: a plain UUID-like id
    /// as it is, any other id as the same pseudonym the record carries, so
    /// the event and its record always join.
    pub fn scrubbed_request_id(mut self, id: &str, scrubber: &crate::Scrubber) -> Self {
        self.request_id = Some(scrubber.request_id(id));
        self
    }

    pub fn policy_sha256(mut self, hex: &str) -> Self {
        self.policy_sha256 = Some(hex.to_string());
        self
    }

    /// Free text from the plugin itself (never request data).
    pub fn detail(mut self, detail: impl Into<String>) -> Self {
        self.detail = Some(detail.into());
        self
    }

    /// The subject's pseudonym (see [`crate::stream::Subject`]), never a
    /// clear principal or address.
    pub fn subject(mut self, pseudonym: &str) -> Self {
        self.subject = Some(pseudonym.to_string());
        self
    }

    /// Flags the event as raised in report-only mode.
    pub fn report_only(mut self) -> Self {
        self.report_only = true;
        self
    }

    /// The counters this event adds one to: its kind's and its
    /// severity's, and in report-only mode its kind's report-only counter.
    pub fn counters(&self) -> impl Iterator<Item = &'static str> {
        [self.event.metric_name(), self.severity.metric_name()]
            .into_iter()
            .chain(
                self.report_only
                    .then(|| self.event.report_only_metric_name()),
            )
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

/// The method if it is a standard token, else `OTHER`.
pub fn known_method(method: &str) -> &'static str {
    const KNOWN: [&str; 9] = [
        "GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH",
    ];
    KNOWN.iter().find(|m| **m == method).map_or("OTHER", |m| m)
}

/// A request id is logged as it is only if it is a plain UUID-like token:
/// the canonical 8-4-4-4-12 hex form Envoy generates. A client may send its
/// own `x-request-id`, and anything else it chooses could carry PII (a phone
/// number, a card number), so events and access records then carry a
/// pseudonym instead ([`crate::Scrubber::request_id`]).
pub fn safe_request_id(id: &str) -> Option<&str> {
    is_uuid(id).then_some(id)
}

/// The canonical 8-4-4-4-12 hex form.
fn is_uuid(id: &str) -> bool {
    let groups: Vec<&str> = id.split('-').collect();
    groups.iter().map(|g| g.len()).eq([8, 4, 4, 4, 12])
        && groups
            .iter()
            .all(|g| g.bytes().all(|c| c.is_ascii_hexdigit()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_has_a_unique_snake_case_name_and_metric() {
        let mut names = std::collections::BTreeSet::new();
        for k in EventKind::ALL {
            assert!(names.insert(k.name()), "duplicate {}", k.name());
            assert!(k
                .name()
                .bytes()
                .all(|c| c.is_ascii_lowercase() || c == b'_'));
            assert_eq!(k.metric_name(), format!("dpp_guard.events.{}", k.name()));
            let json = serde_json::to_value(SecurityEvent::new(*k)).unwrap();
            assert_eq!(json["event"], k.name());
            assert_eq!(json["severity"], k.severity().name());
        }
    }

    #[test]
    fn docs_list_every_kind_with_its_severity_and_the_metric_names() {
        let docs = include_str!("../../docs/logging.md");
        for k in EventKind::ALL {
            let row = format!("| `{}` | {} |", k.name(), k.severity().name());
            assert!(docs.contains(&row), "docs/logging.md lacks the row {row}");
        }
        for name in [
            "dpp_guard_events_<event>",
            "dpp_guard_events_by_severity_<severity>",
            "dpp_guard_access_records",
        ] {
            assert!(docs.contains(name), "docs/logging.md lacks {name}");
        }
        assert_eq!(
            Severity::High.metric_name(),
            "dpp_guard.events_by_severity.high"
        );
        assert_eq!(ACCESS_RECORDS_METRIC, "dpp_guard.access_records");
    }

    #[test]
    fn log_line_is_prefix_and_json() {
        let line = SecurityEvent::new(EventKind::PolicyLoaded)
            .policy_sha256("ab")
            .to_log_line();
        let json: serde_json::Value =
            serde_json::from_str(line.strip_prefix("dpp_event ").unwrap()).unwrap();
        assert_eq!(json["category"], "configuration");
        assert_eq!(json["policy_sha256"], "ab");
    }

    #[test]
    fn request_ids_that_could_carry_pii_are_dropped() {
        let ok = "0f8fad5b-d9cb-469f-a165-70867728950e";
        assert!(safe_request_id("12345678-1234-5678-1234-567812345678").is_some());
        assert_eq!(
            SecurityEvent::new(EventKind::KillSwitchRefusal)
                .request_id(ok)
                .request_id
                .as_deref(),
            Some(ok)
        );
        for bad in [
            "jane@example.com",
            "555-123-4567",
            "5551234567",
            "4111111111111111",
            "4111-1111-1111-1111",
            "0f8fad5bd9cb469fa16570867728950e",
            "abc def",
            &"a".repeat(65),
        ] {
            assert_eq!(safe_request_id(bad), None, "{bad}");
        }
        assert_eq!(known_method("get"), "OTHER");
    }
}
