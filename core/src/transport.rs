//! Encryption in transit: what the upstream guard and the downstream check
//! decide, as pure functions of what Envoy reports about a connection.
//!
//! The upstream guard runs as an upstream HTTP filter. Envoy asks its
//! connection pool for a stream *before* the upstream filters run, so:
//! - on a pooled connection the connection's facts are readable at once and
//!   the guard decides in the request-headers callback;
//! - on a new connection nothing is known yet; the request is parked
//!   ([`Step::Wait`]) and the plugin polls until the connection exists, then
//!   decides. Past the wait bound it refuses. If the stream disappears while
//!   parked (the connect failed and Envoy answered 503 on its own) the check
//!   is abandoned.
//!
//! In every case no request byte is written to the upstream before
//! [`Step::Allow`]: the headers (and any body) stay in Envoy's buffers.

use std::time::Duration;

use crate::decision::LocalReply;
use crate::events::{EventKind, SecurityEvent};
use crate::policy::{
    ClusterName, ClusterRule, PeerPin, Policy, Route, TlsVersion, UpstreamTransport,
};

/// What Envoy reports about an established upstream connection.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct UpstreamConnection<'a> {
    /// `upstream.tls_version`; absent on a plaintext connection.
    pub tls_version: Option<&'a str>,
    /// `upstream.uri_san_peer_certificate` (the first URI SAN).
    pub uri_san: Option<&'a str>,
    /// `upstream.dns_san_peer_certificate` (the first DNS SAN).
    pub dns_san: Option<&'a str>,
    /// `upstream.sha256_peer_certificate_digest`, hex.
    pub sha256: Option<&'a str>,
}

/// One look at the upstream side of a stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Observation<'a> {
    /// `upstream.local_address` is absent: the connection does not exist yet.
    NotConnected,
    /// `upstream.local_address` is present: the connection exists.
    Connected(UpstreamConnection<'a>),
    /// The stream is gone (its context can no longer be reached).
    Gone,
}

/// Why an upstream connection is not acceptable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpstreamRefusal {
    /// No TLS on the connection.
    Plaintext,
    /// TLS older than the minimum, or a version name this build does not know.
    TlsTooOld,
    /// The peer certificate does not match the cluster's pin.
    IdentityMismatch,
    /// The connection did not exist within the wait bound.
    WaitExpired,
    /// Envoy could not hand over the connection's facts.
    Unverifiable,
}

impl UpstreamRefusal {
    /// The local reply the client gets. Nothing of the request went upstream.
    pub fn reply(self) -> LocalReply {
        match self {
            UpstreamRefusal::Plaintext => LocalReply::json(
                502,
                "upstream_not_tls",
                "the upstream connection is not encrypted; the request was not sent",
            ),
            UpstreamRefusal::TlsTooOld => LocalReply::json(
                502,
                "upstream_tls_version",
                "the upstream connection uses a TLS version below the policy minimum; the request was not sent",
            ),
            UpstreamRefusal::IdentityMismatch => LocalReply::json(
                502,
                "upstream_identity",
                "the upstream certificate does not match the pinned identity; the request was not sent",
            ),
            UpstreamRefusal::WaitExpired => LocalReply::json(
                504,
                "upstream_connect_wait",
                "no upstream connection within the policy's wait bound; the request was not sent",
            ),
            UpstreamRefusal::Unverifiable => LocalReply::json(
                502,
                "check_unavailable",
                "the upstream connection could not be checked; the request was not sent",
            ),
        }
    }

    pub fn event_kind(self) -> EventKind {
        match self {
            UpstreamRefusal::Plaintext => EventKind::UpstreamPlaintextRefused,
            UpstreamRefusal::TlsTooOld => EventKind::UpstreamTlsVersionRefused,
            UpstreamRefusal::IdentityMismatch => EventKind::UpstreamIdentityRefused,
            UpstreamRefusal::WaitExpired => EventKind::UpstreamWaitExpired,
            UpstreamRefusal::Unverifiable => EventKind::HostCallFailed,
        }
    }
}

impl UpstreamTransport {
    /// The rule the operator wrote for a cluster, if any.
    pub fn rule(&self, cluster: Option<&ClusterName>) -> Option<&ClusterRule> {
        cluster.and_then(|c| self.clusters.get(c))
    }

    /// Whether an established connection may carry the request.
    pub fn verify(
        &self,
        cluster: Option<&ClusterName>,
        conn: &UpstreamConnection<'_>,
    ) -> Result<(), UpstreamRefusal> {
        let rule = self.rule(cluster);
        if let Some(ClusterRule::Exempt { .. }) = rule {
            // Explicit operator decision, logged at start: anything goes.
            return Ok(());
        }
        let Some(version) = conn.tls_version else {
            return Err(UpstreamRefusal::Plaintext);
        };
        // An unknown version name is refused rather than guessed at.
        match TlsVersion::from_envoy(version) {
            Some(v) if v >= self.min_tls_version => {}
            _ => return Err(UpstreamRefusal::TlsTooOld),
        }
        if let Some(ClusterRule::Pin(pin)) = rule {
            if !pin_matches(pin, conn) {
                return Err(UpstreamRefusal::IdentityMismatch);
            }
        }
        Ok(())
    }
}

/// Every field the pin sets must equal what the certificate shows; a field
/// the certificate lacks is a mismatch.
fn pin_matches(pin: &PeerPin, conn: &UpstreamConnection<'_>) -> bool {
    let eq = |want: &Option<String>, got: Option<&str>| match want {
        None => true,
        Some(w) => got == Some(w.as_str()),
    };
    let sha_eq = match &pin.sha256 {
        None => true,
        Some(w) => conn
            .sha256
            .is_some_and(|g| g.eq_ignore_ascii_case(w.as_str())),
    };
    eq(&pin.uri_san, conn.uri_san) && eq(&pin.dns_san, conn.dns_san) && sha_eq
}

/// Where a check stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CheckState {
    /// No decision yet; the request is held.
    Waiting,
    Allowed,
    Refused(UpstreamRefusal),
    /// The stream went away while waiting.
    Abandoned,
}

/// What the plugin must do after an observation.
#[derive(Debug, Clone, PartialEq)]
pub enum Step {
    /// Let the request go (resume it if it was held).
    Allow,
    /// Keep holding the request and look again later.
    Wait,
    /// Answer with `reply` and log `event`; the request never goes upstream.
    Refuse {
        reply: LocalReply,
        event: SecurityEvent,
    },
    /// Report mode (`transport.upstream.mode: report`): log `event`
    /// (flagged `report_only`) and let the request go as [`Step::Allow`].
    Report { event: SecurityEvent },
    /// The stream is gone; log `event`, forget the check.
    Abandon { event: SecurityEvent },
    /// Already decided earlier; nothing to do.
    Settled,
}

impl Step {
    /// The guard's outcome counter for this step (`pooled`: the decision
    /// was made on the first look), if the step is an outcome.
    pub fn counter(&self, pooled: bool) -> Option<&'static str> {
        use crate::wire::upstream_metrics as m;
        match self {
            Step::Report { .. } => Some(m::REPORTED),
            Step::Allow if pooled => Some(m::ALLOWED_POOLED),
            Step::Allow => Some(m::ALLOWED_NEW),
            Step::Refuse { event, .. } if event.event == EventKind::UpstreamWaitExpired => {
                Some(m::WAIT_EXPIRED)
            }
            Step::Refuse { .. } if pooled => Some(m::REFUSED_POOLED),
            Step::Refuse { .. } => Some(m::REFUSED_NEW),
            Step::Abandon { .. } => Some(m::GONE),
            Step::Wait | Step::Settled => None,
        }
    }
}

/// The guard's decision for one upstream request, as a state machine.
#[derive(Debug, Clone)]
pub struct UpstreamCheck {
    cluster: Option<ClusterName>,
    state: CheckState,
    /// Decided at the first observation (a pooled connection).
    pooled: bool,
    observations: u32,
}

impl UpstreamCheck {
    pub fn new(cluster: Option<ClusterName>) -> Self {
        UpstreamCheck {
            cluster,
            state: CheckState::Waiting,
            pooled: false,
            observations: 0,
        }
    }

    pub fn state(&self) -> CheckState {
        self.state
    }

    pub fn is_waiting(&self) -> bool {
        self.state == CheckState::Waiting
    }

    /// True when the decision was made on the first look, i.e. the stream
    /// got a pooled connection.
    pub fn pooled(&self) -> bool {
        self.pooled
    }

    pub fn cluster(&self) -> Option<&ClusterName> {
        self.cluster.as_ref()
    }

    /// Feeds one observation; `waited` is the time since the request
    /// reached the guard.
    pub fn observe(
        &mut self,
        policy: &UpstreamTransport,
        obs: Observation<'_>,
        waited: Duration,
    ) -> Step {
        if self.state != CheckState::Waiting {
            return Step::Settled;
        }
        self.observations = self.observations.saturating_add(1);
        match obs {
            Observation::Connected(conn) => {
                self.pooled = self.observations == 1;
                match policy.verify(self.cluster.as_ref(), &conn) {
                    Ok(()) => {
                        self.state = CheckState::Allowed;
                        Step::Allow
                    }
                    Err(why) => self.refuse(policy, why),
                }
            }
            Observation::NotConnected if waited >= policy.connect_wait => {
                self.refuse(policy, UpstreamRefusal::WaitExpired)
            }
            Observation::NotConnected => Step::Wait,
            Observation::Gone => {
                self.state = CheckState::Abandoned;
                Step::Abandon {
                    event: self
                        .event(EventKind::UpstreamConnectionGone)
                        .detail(format!(
                            "{}; stream ended before an upstream connection existed",
                            self.cluster_detail()
                        )),
                }
            }
        }
    }

    /// The connection's facts could not be read: the request is refused
    /// (fail closed), never sent on facts the guard did not see.
    pub fn host_failed(&mut self, fault: crate::stream::HostFault) -> Step {
        if self.state != CheckState::Waiting {
            return Step::Settled;
        }
        self.state = CheckState::Refused(UpstreamRefusal::Unverifiable);
        Step::Refuse {
            reply: UpstreamRefusal::Unverifiable.reply(),
            event: self.event(EventKind::HostCallFailed).detail(format!(
                "{}; upstream guard: {fault}",
                self.cluster_detail()
            )),
        }
    }

    /// A refusal, or in report mode the same event flagged `report_only`
    /// and the request allowed. (A check that could not run,
    /// [`UpstreamCheck::host_failed`], is refused in both modes.)
    fn refuse(&mut self, policy: &UpstreamTransport, why: UpstreamRefusal) -> Step {
        let how = if self.pooled {
            "pooled connection"
        } else {
            "new connection"
        };
        let event = self
            .event(why.event_kind())
            .detail(format!("{}; {how}", self.cluster_detail()));
        if policy.mode.is_report() {
            self.state = CheckState::Allowed;
            return Step::Report {
                event: event.report_only(),
            };
        }
        self.state = CheckState::Refused(why);
        Step::Refuse {
            reply: why.reply(),
            event,
        }
    }

    fn event(&self, kind: EventKind) -> SecurityEvent {
        SecurityEvent::new(kind)
    }

    fn cluster_detail(&self) -> String {
        match &self.cluster {
            Some(c) => format!("cluster={}", c.as_str()),
            None => "cluster=unknown".to_string(),
        }
    }
}

/// Events to log once when a policy is loaded: every exemption and the
/// trusted-terminator declaration weaken the default, so each is visible.
pub fn startup_warnings(policy: &Policy) -> Vec<SecurityEvent> {
    let mut out = Vec::new();
    for (name, rule) in &policy.transport.upstream.clusters {
        if let ClusterRule::Exempt { reason } = rule {
            out.push(
                SecurityEvent::new(EventKind::UpstreamTlsExemption)
                    .detail(format!("cluster={}; reason: {reason}", name.as_str())),
            );
        }
    }
    if policy.transport.downstream.trusted_tls_terminator {
        out.push(
            SecurityEvent::new(EventKind::TrustedTlsTerminator)
                .detail("downstream plaintext accepted on protected routes: listener declared behind a trusted TLS terminator"),
        );
    }
    out
}

impl Policy {
    /// Whether protected routes must check the downstream connection's TLS
    /// (false behind a declared trusted TLS terminator).
    pub fn downstream_tls_required(&self) -> bool {
        !self.transport.downstream.trusted_tls_terminator
    }

    /// Downstream check for a protected route: the request must have come
    /// over TLS (at least the policy's minimum version) unless the listener
    /// is declared to sit behind a trusted TLS terminator.
    ///
    /// `tls_version` is `connection.tls_version`, absent on plaintext.
    pub fn downstream_refusal(
        &self,
        route: &Route,
        tls_version: Option<&str>,
        method: &str,
    ) -> Option<(LocalReply, SecurityEvent)> {
        if self.transport.downstream.trusted_tls_terminator {
            return None;
        }
        let min = self.transport.upstream.min_tls_version;
        let ok = tls_version
            .and_then(TlsVersion::from_envoy)
            .is_some_and(|v| v >= min);
        if ok {
            return None;
        }
        let detail = match tls_version {
            None => "request arrived without TLS".to_string(),
            Some(_) => format!("request arrived over TLS below {min}"),
        };
        Some((
            LocalReply::json(
                403,
                "downstream_tls_required",
                "this route only accepts requests over TLS",
            ),
            SecurityEvent::new(EventKind::DownstreamPlaintextRefused)
                .route(&route.name)
                .method(method)
                .detail(detail),
        ))
    }

    /// Defence in depth, after the fact: a response (or log entry) from an
    /// upstream connection without TLS that the guard should have refused.
    /// Returns the event to log and count, or `None` if all is well.
    ///
    /// `connected` is whether `upstream.local_address` is present;
    /// `code_details` is `response.code_details`; `phase` names where it was
    /// seen (`response` or `log`).
    pub fn plaintext_upstream_seen(
        &self,
        cluster: Option<&ClusterName>,
        connected: bool,
        tls_version: Option<&str>,
        code_details: Option<&str>,
        phase: &str,
    ) -> Option<SecurityEvent> {
        if !connected || tls_version.is_some() || !request_went_upstream(code_details) {
            return None;
        }
        let upstream = &self.transport.upstream;
        if let Some(ClusterRule::Exempt { .. }) = upstream.rule(cluster) {
            return None;
        }
        let cluster = cluster.map_or("unknown", ClusterName::as_str);
        Some(
            SecurityEvent::new(EventKind::PlaintextUpstreamObserved).detail(format!(
                "cluster={cluster}; seen at {phase}; the upstream guard is missing or bypassed for this cluster"
            )),
        )
    }
}

/// Whether the request was handed to the upstream connection. Envoy says
/// `via_upstream` for a response from the upstream and `upstream_reset_...`
/// when the upstream reset the stream; a refusal by the upstream guard is a
/// local reply (other details), where nothing was sent, so it is no alarm.
fn request_went_upstream(code_details: Option<&str>) -> bool {
    code_details.is_some_and(|d| d == "via_upstream" || d.starts_with("upstream_reset_"))
}

#[cfg(test)]
mod tests;
