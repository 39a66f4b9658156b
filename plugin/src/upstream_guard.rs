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
//! only reads properties (through the non-panicking [`crate::host`]
//! wrappers: a property Envoy cannot hand over refuses the request) and
//! applies the step.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;
use std::time::{Duration, SystemTime};

use dpp_core::policy::{ClusterName, ClusterRule, UpstreamTransport};
use dpp_core::stream::HostFault;
use dpp_core::transport::{startup_warnings, Observation, Step, UpstreamCheck, UpstreamConnection};
use dpp_core::{EventKind, Policy, SecurityEvent};
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType};

use crate::host::{self, map, stream, Level};
use crate::logging::emit;
use crate::metrics;
use crate::stream::send_local_reply;

/// The root id Envoy's configuration must name for the upstream guard.
pub const ROOT_ID: &str = dpp_core::wire::UPSTREAM_GUARD_ROOT_ID;

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
        let config = host::plugin_configuration();
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
                host::log(Level::Critical, &format!("dpp-guard upstream guard: {e}"));
                emit(&SecurityEvent::new(EventKind::PolicyRejected).detail(e.field.clone()));
                false
            }
        }
    }

    fn on_tick(&mut self) {
        let Some(policy) = self.policy.clone() else {
            return;
        };
        // No borrow of the entries lives across a host call (a local reply
        // can re-enter the module); a busy one is skipped until the next tick.
        let Ok(entries) = self.entries.try_borrow() else {
            return;
        };
        let waiting: Vec<u32> = entries
            .iter()
            .filter(|(_, e)| e.check.is_waiting())
            .map(|(id, _)| *id)
            .collect();
        drop(entries);
        for id in waiting {
            if host::set_effective_context(id).is_err() {
                // The stream no longer exists on Envoy's side.
                self.step(&policy, id, Look::Saw(Observation::Gone));
                continue;
            }
            let cluster = self
                .entries
                .try_borrow()
                .ok()
                .and_then(|entries| entries.get(&id).and_then(|e| e.check.cluster().cloned()));
            match ConnectionFacts::read(&policy.transport.upstream, cluster.as_ref()) {
                Ok(facts) => self.step(&policy, id, Look::Saw(facts.observation())),
                Err(fault) => self.step(&policy, id, Look::Failed(fault)),
            }
            // Effective context reverts when the callback returns.
        }
        let idle = self
            .entries
            .try_borrow()
            .is_ok_and(|entries| !entries.values().any(|e| e.check.is_waiting()));
        if idle {
            let _ = host::set_tick_period(Duration::ZERO);
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
    fn step(&self, policy: &Policy, id: u32, look: Look<'_>) {
        let (step, method, pooled) = {
            let Ok(mut entries) = self.entries.try_borrow_mut() else {
                return;
            };
            let Some(entry) = entries.get_mut(&id) else {
                return;
            };
            let waited = elapsed(entry.since);
            let step = match look {
                Look::Saw(obs) => entry.check.observe(&policy.transport.upstream, obs, waited),
                Look::Failed(fault) => entry.check.host_failed(fault),
            };
            (step, entry.method.clone(), entry.check.pooled())
        };
        if matches!(look, Look::Saw(Observation::Gone)) {
            if let Ok(mut entries) = self.entries.try_borrow_mut() {
                entries.remove(&id);
            }
        }
        apply(step, &method, pooled, Resume::FromTick);
    }
}

/// What one look at a parked stream gave.
#[derive(Clone, Copy)]
enum Look<'a> {
    Saw(Observation<'a>),
    /// Envoy could not hand over the connection's facts.
    Failed(HostFault),
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
        let upstream = &self.policy.transport.upstream;
        // The method only names the request in events.
        let method = host::header(map::REQUEST_HEADERS, ":method")
            .ok()
            .flatten()
            .unwrap_or_default();
        let cluster = host::property(&["xds", "cluster_name"]).map(|v| {
            v.and_then(|v| String::from_utf8(v).ok())
                .filter(|c| !c.is_empty())
                .map(ClusterName::new)
        });
        let (check, step) = match cluster {
            Ok(cluster) => {
                let mut check = UpstreamCheck::new(cluster.clone());
                let step = match ConnectionFacts::read(upstream, cluster.as_ref()) {
                    Ok(facts) => check.observe(upstream, facts.observation(), Duration::ZERO),
                    Err(fault) => check.host_failed(fault),
                };
                (check, step)
            }
            Err(fault) => {
                let mut check = UpstreamCheck::new(None);
                let step = check.host_failed(fault);
                (check, step)
            }
        };
        let pooled = check.pooled();
        let Ok(mut entries) = self.entries.try_borrow_mut() else {
            // Cannot happen (no borrow lives across a callback); if it did,
            // the request stays held rather than go unfollowed.
            host::log(Level::Error, "dpp-guard upstream guard: entries busy");
            return Action::Pause;
        };
        entries.insert(
            self.id,
            Entry {
                check,
                since: now(),
                method: method.clone(),
            },
        );
        drop(entries);
        if step == Step::Wait {
            // Ticks belong to the root; Envoy routes this call to it. A
            // tick that cannot be set would leave the request parked until
            // Envoy's own timeout: never sent.
            let _ = host::set_tick_period(POLL);
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
        let allowed = self.entries.try_borrow().is_ok_and(|entries| {
            entries
                .get(&self.id)
                .is_some_and(|e| e.check.state() == dpp_core::transport::CheckState::Allowed)
        });
        if allowed {
            Action::Continue
        } else {
            Action::Pause
        }
    }

    /// Removes the entry; a stream that ends while still waiting means the
    /// connection never came (Envoy answered on its own, usually 503).
    fn forget(&mut self) {
        let Some(mut entry) = self
            .entries
            .try_borrow_mut()
            .ok()
            .and_then(|mut e| e.remove(&self.id))
        else {
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
    if let Some(counter) = step.counter(pooled) {
        metrics::increment(counter);
    }
    match step {
        Step::Allow | Step::Report { .. } => {
            if let Step::Report { event } = &step {
                emit(&event.clone().method(method));
            }
            if from == Resume::FromTick && host::resume_request().is_err() {
                // Envoy could not resume it: it stays held, never sent
                // unchecked; Envoy's own timeout ends it.
                host::log(Level::Error, "dpp-guard upstream guard: resume failed");
            }
            Action::Continue
        }
        Step::Wait | Step::Settled => Action::Pause,
        Step::Refuse { reply, event } => {
            emit(&event.method(method));
            if from != Resume::Never
                && send_local_reply(&reply, &[("x-dpp-guard", reply.code)]).is_err()
            {
                let _ = host::close_stream(stream::REQUEST);
            }
            Action::Pause
        }
        Step::Abandon { event } => {
            emit(&event.method(method));
            Action::Pause
        }
    }
}

fn now() -> SystemTime {
    host::now_unix_nanos().map_or(SystemTime::UNIX_EPOCH, |n| {
        SystemTime::UNIX_EPOCH + Duration::from_nanos(n)
    })
}

fn elapsed(since: SystemTime) -> Duration {
    now().duration_since(since).unwrap_or(Duration::ZERO)
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
    fn read(
        upstream: &UpstreamTransport,
        cluster: Option<&ClusterName>,
    ) -> Result<Self, HostFault> {
        let connected = property(&["upstream", "local_address"])?.is_some();
        let pin = match upstream.rule(cluster) {
            Some(ClusterRule::Pin(pin)) => Some(pin),
            _ => None,
        };
        let wanted = |field: Option<&String>, name: &str| {
            if connected && field.is_some() {
                property(&["upstream", name])
            } else {
                Ok(None)
            }
        };
        Ok(ConnectionFacts {
            connected,
            tls_version: if connected {
                property(&["upstream", "tls_version"])?
            } else {
                None
            },
            uri_san: wanted(
                pin.and_then(|p| p.uri_san.as_ref()),
                "uri_san_peer_certificate",
            )?,
            dns_san: wanted(
                pin.and_then(|p| p.dns_san.as_ref()),
                "dns_san_peer_certificate",
            )?,
            sha256: wanted(
                pin.and_then(|p| p.sha256.as_ref()),
                "sha256_peer_certificate_digest",
            )?,
        })
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

/// A string property; empty or non-UTF-8 values count as absent, a host
/// error is a fault.
fn property(path: &[&str]) -> Result<Option<String>, HostFault> {
    Ok(host::property(path)?
        .and_then(|v| String::from_utf8(v).ok())
        .filter(|s| !s.is_empty()))
}
