//! The upstream TLS guard: root id `dpp_upstream_guard`, installed as a
//! router-wide upstream HTTP filter (Router `upstream_http_filters`).
//!
//! Envoy runs upstream filters after it asked the pool for a connection:
//! - pooled connection: its facts are readable in the request-headers
//!   callback, the guard decides at once;
//! - new connection: nothing is readable yet; the stream is parked (headers
//!   and body held in Envoy's buffers) and [`UpstreamGuardRoot::on_tick`]
//!   looks at it every millisecond through `set_effective_context` until the
//!   connection exists, then resumes or refuses it. Past the policy's wait
//!   bound it refuses.
//!
//! The decision itself is `dpp_core::transport::UpstreamCheck`; this module
//! only reads properties and applies the step.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;
use std::time::{Duration, SystemTime};

use dpp_core::policy::{ClusterName, ClusterRule, UpstreamTransport};
use dpp_core::transport::{startup_warnings, Observation, Step, UpstreamCheck, UpstreamConnection};
use dpp_core::{EventKind, LocalReply, Policy, SecurityEvent};
use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType, LogLevel};

use crate::logging::emit;
use crate::{log, metrics};

/// The root id Envoy's configuration must name for the upstream guard.
pub const ROOT_ID: &str = dpp_core::wire::UPSTREAM_GUARD_ROOT_ID;

/// Counters of the guard's outcomes (`wasmcustom.dpp_guard.upstream.*`).
pub const METRIC_ALLOWED_POOLED: &str = dpp_core::wire::upstream_metrics::ALLOWED_POOLED;
pub const METRIC_ALLOWED_NEW: &str = dpp_core::wire::upstream_metrics::ALLOWED_NEW;
pub const METRIC_REFUSED_POOLED: &str = dpp_core::wire::upstream_metrics::REFUSED_POOLED;
pub const METRIC_REFUSED_NEW: &str = dpp_core::wire::upstream_metrics::REFUSED_NEW;
pub const METRIC_WAIT_EXPIRED: &str = dpp_core::wire::upstream_metrics::WAIT_EXPIRED;
pub const METRIC_GONE: &str = dpp_core::wire::upstream_metrics::GONE;

/// Poll period while any request waits for its connection (measured: new
/// connections become visible 1-4 ms after the request reaches the filter).
const POLL: Duration = Duration::from_millis(1);

/// One guarded upstream request.
struct Entry {
    check: UpstreamCheck,
    since: SystemTime,
    method: String,
}

/// Every live guard stream of this worker, by context id. The streams own
/// their entry (insert on headers, remove on done); the root only looks at
/// the ones still waiting.
type Entries = Rc<RefCell<BTreeMap<u32, Entry>>>;

/// Root context of the upstream guard.
#[derive(Default)]
pub struct UpstreamGuardRoot {
    policy: Option<Rc<Policy>>,
    entries: Entries,
}

impl Context for UpstreamGuardRoot {}

impl RootContext for UpstreamGuardRoot {
    fn on_configure(&mut self, _plugin_configuration_size: usize) -> bool {
        let config = self.get_plugin_configuration().unwrap_or_default();
        match Policy::from_json(&config) {
            Ok(policy) => {
                let u = &policy.transport.upstream;
                let event = SecurityEvent::new(EventKind::PolicyLoaded).detail(format!(
                    "upstream guard: min {}, wait {} ms, {} cluster rules",
                    u.min_tls_version,
                    u.connect_wait.as_millis(),
                    u.clusters.len()
                ));
                emit(&event.policy_sha256(&policy.sha256));
                for warning in startup_warnings(&policy) {
                    if warning.event == EventKind::UpstreamTlsExemption {
                        emit(&warning);
                    }
                }
                self.policy = Some(Rc::new(policy));
                true
            }
            Err(e) => {
                // Refusing the configuration makes Envoy refuse the filter:
                // no unguarded upstream traffic.
                log(
                    LogLevel::Critical,
                    &format!("dpp-guard upstream guard: {e}"),
                );
                emit(&SecurityEvent::new(EventKind::PolicyRejected).detail(e.field.clone()));
                false
            }
        }
    }

    fn on_tick(&mut self) {
        let Some(policy) = self.policy.clone() else {
            return;
        };
        let waiting: Vec<u32> = self
            .entries
            .borrow()
            .iter()
            .filter(|(_, e)| e.check.is_waiting())
            .map(|(id, _)| *id)
            .collect();
        for id in waiting {
            if hostcalls::set_effective_context(id).is_err() {
                // The stream no longer exists on Envoy's side.
                self.step(&policy, id, Observation::Gone);
                continue;
            }
            let cluster = self
                .entries
                .borrow()
                .get(&id)
                .and_then(|e| e.check.cluster().cloned());
            let facts = ConnectionFacts::read(&policy.transport.upstream, cluster.as_ref());
            self.step(&policy, id, facts.observation());
            // Effective context reverts when the callback returns.
        }
        if !self.entries.borrow().values().any(|e| e.check.is_waiting()) {
            let _ = hostcalls::set_tick_period(Duration::ZERO);
        }
    }

    fn create_http_context(&self, context_id: u32) -> Option<Box<dyn HttpContext>> {
        let policy = self.policy.clone()?;
        Some(Box::new(UpstreamGuardStream {
            id: context_id,
            policy,
            entries: self.entries.clone(),
        }))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

impl UpstreamGuardRoot {
    /// Feeds one observation for a parked stream and applies the step.
    /// The entries borrow is released before any host call: a local reply
    /// can re-enter the module (the stream's on_done).
    fn step(&self, policy: &Policy, id: u32, obs: Observation<'_>) {
        let (step, method, pooled) = {
            let mut entries = self.entries.borrow_mut();
            let Some(entry) = entries.get_mut(&id) else {
                return;
            };
            let waited = elapsed(entry.since);
            let step = entry.check.observe(&policy.transport.upstream, obs, waited);
            (step, entry.method.clone(), entry.check.pooled())
        };
        if matches!(obs, Observation::Gone) {
            self.entries.borrow_mut().remove(&id);
        }
        apply(step, &method, pooled, Resume::FromTick);
    }
}

/// One upstream request under the guard.
pub struct UpstreamGuardStream {
    id: u32,
    policy: Rc<Policy>,
    entries: Entries,
}

impl Context for UpstreamGuardStream {
    fn on_done(&mut self) -> bool {
        self.forget();
        true
    }
}

impl Drop for UpstreamGuardStream {
    fn drop(&mut self) {
        self.forget();
    }
}

impl HttpContext for UpstreamGuardStream {
    fn on_http_request_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        let cluster = self
            .get_property(vec!["xds", "cluster_name"])
            .and_then(|v| String::from_utf8(v).ok())
            .filter(|c| !c.is_empty())
            .map(ClusterName::new);
        let method = self.get_http_request_header(":method").unwrap_or_default();
        let facts = ConnectionFacts::read(&self.policy.transport.upstream, cluster.as_ref());
        let mut check = UpstreamCheck::new(cluster);
        let step = check.observe(
            &self.policy.transport.upstream,
            facts.observation(),
            Duration::ZERO,
        );
        let pooled = check.pooled();
        self.entries.borrow_mut().insert(
            self.id,
            Entry {
                check,
                since: hostcalls::get_current_time().unwrap_or(SystemTime::UNIX_EPOCH),
                method: method.clone(),
            },
        );
        if step == Step::Wait {
            // Ticks belong to the root; Envoy routes this call to it.
            let _ = hostcalls::set_tick_period(POLL);
        }
        apply(step, &method, pooled, Resume::Inline)
    }

    fn on_http_request_body(&mut self, _body_size: usize, _end_of_stream: bool) -> Action {
        self.hold_unless_allowed()
    }

    fn on_http_request_trailers(&mut self, _num_trailers: usize) -> Action {
        self.hold_unless_allowed()
    }
}

impl UpstreamGuardStream {
    /// Body and trailers pass only once the connection was accepted; while
    /// waiting (or after a refusal) Envoy keeps them buffered.
    fn hold_unless_allowed(&self) -> Action {
        let allowed = self
            .entries
            .borrow()
            .get(&self.id)
            .is_some_and(|e| e.check.state() == dpp_core::transport::CheckState::Allowed);
        if allowed {
            Action::Continue
        } else {
            Action::Pause
        }
    }

    /// Removes the entry; a stream that ends while still waiting means the
    /// connection never came (Envoy answered on its own, usually 503).
    fn forget(&mut self) {
        let Some(mut entry) = self.entries.borrow_mut().remove(&self.id) else {
            return;
        };
        if entry.check.is_waiting() {
            let waited = elapsed(entry.since);
            let step =
                entry
                    .check
                    .observe(&self.policy.transport.upstream, Observation::Gone, waited);
            apply(step, &entry.method, false, Resume::Never);
        }
    }
}

/// Where a step is applied from.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Resume {
    /// In the stream's own callback: returning Continue lets it go.
    Inline,
    /// From the root's tick with the stream as effective context: an
    /// explicit resume is needed.
    FromTick,
    /// The stream is gone: only log.
    Never,
}

fn apply(step: Step, method: &str, pooled: bool, from: Resume) -> Action {
    match step {
        Step::Allow => {
            metrics::increment(if pooled {
                METRIC_ALLOWED_POOLED
            } else {
                METRIC_ALLOWED_NEW
            });
            if from == Resume::FromTick {
                let _ = hostcalls::resume_http_request();
            }
            Action::Continue
        }
        Step::Wait | Step::Settled => Action::Pause,
        Step::Refuse { reply, event } => {
            metrics::increment(if event.event == EventKind::UpstreamWaitExpired {
                METRIC_WAIT_EXPIRED
            } else if pooled {
                METRIC_REFUSED_POOLED
            } else {
                METRIC_REFUSED_NEW
            });
            emit(&event.method(method));
            if from != Resume::Never {
                send_local_reply(&reply);
            }
            Action::Pause
        }
        Step::Abandon { event } => {
            metrics::increment(METRIC_GONE);
            emit(&event.method(method));
            Action::Pause
        }
    }
}

fn send_local_reply(reply: &LocalReply) {
    let _ = hostcalls::send_http_response(
        reply.status,
        vec![
            ("content-type", LocalReply::CONTENT_TYPE),
            ("cache-control", "no-store"),
            ("x-dpp-guard", reply.code),
        ],
        Some(reply.body.as_bytes()),
    );
}

fn elapsed(since: SystemTime) -> Duration {
    hostcalls::get_current_time()
        .ok()
        .and_then(|now| now.duration_since(since).ok())
        .unwrap_or(Duration::ZERO)
}

/// The upstream connection as Envoy reports it for the effective context.
struct ConnectionFacts {
    connected: bool,
    tls_version: Option<String>,
    uri_san: Option<String>,
    dns_san: Option<String>,
    sha256: Option<String>,
}

impl ConnectionFacts {
    /// Reads what deciding needs, nothing more: every property read is a
    /// host call plus an allocation callback into the VM, on every request.
    /// Certificate fields are read only when the cluster's pin names them
    /// (`pin_matches` looks at no other field), and nothing after an absent
    /// connection.
    fn read(upstream: &UpstreamTransport, cluster: Option<&ClusterName>) -> Self {
        let connected = property(&["upstream", "local_address"]).is_some();
        let pin = match upstream.rule(cluster) {
            Some(ClusterRule::Pin(pin)) => Some(pin),
            _ => None,
        };
        let wanted = |field: Option<&String>, name: &str| {
            if connected && field.is_some() {
                property(&["upstream", name])
            } else {
                None
            }
        };
        ConnectionFacts {
            connected,
            tls_version: if connected {
                property(&["upstream", "tls_version"])
            } else {
                None
            },
            uri_san: wanted(
                pin.and_then(|p| p.uri_san.as_ref()),
                "uri_san_peer_certificate",
            ),
            dns_san: wanted(
                pin.and_then(|p| p.dns_san.as_ref()),
                "dns_san_peer_certificate",
            ),
            sha256: wanted(
                pin.and_then(|p| p.sha256.as_ref()),
                "sha256_peer_certificate_digest",
            ),
        }
    }

    fn observation(&self) -> Observation<'_> {
        if !self.connected {
            return Observation::NotConnected;
        }
        Observation::Connected(UpstreamConnection {
            tls_version: self.tls_version.as_deref(),
            uri_san: self.uri_san.as_deref(),
            dns_san: self.dns_san.as_deref(),
            sha256: self.sha256.as_deref(),
        })
    }
}

/// A string property; errors and empty values count as absent.
pub(crate) fn property(path: &[&str]) -> Option<String> {
    hostcalls::get_property(path.to_vec())
        .ok()
        .flatten()
        .and_then(|v| String::from_utf8(v).ok())
        .filter(|s| !s.is_empty())
}
