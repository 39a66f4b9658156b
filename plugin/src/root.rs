//! The root context: loads and holds the worker's policy, keyring and log sink.

use std::rc::Rc;

use dpp_core::access::chain::LogChain;
use dpp_core::stream::Guard;
use dpp_core::{EventKind, Policy, PolicyError, SecurityEvent};
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::ContextType;

use crate::host::{self, Level};
use crate::logging::LogSink;
use crate::stream::{GuardedStream, UnconfiguredStream};

/// Holds the worker's guard (compiled policy and keyring) and log sink;
/// opens an exchange for every stream.
#[derive(Default)]
pub struct PolicyRoot {
    guard: Option<Rc<Guard>>,
    sink: Option<Rc<LogSink>>,
}

impl Context for PolicyRoot {}

impl RootContext for PolicyRoot {
    fn on_configure(&mut self, _plugin_configuration_size: usize) -> bool {
        let config = host::plugin_configuration();
        match Policy::from_json(&config) {
            Ok(policy) => self.load(policy),
            Err(e) => refuse(&e),
        }
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        // Never None (the SDK panics on it): without a policy, streams are
        // answered, not passed.
        match (&self.guard, &self.sink) {
            (Some(guard), Some(sink)) => {
                Some(Box::new(GuardedStream::new(guard.open(), Rc::clone(sink))))
            }
            _ => Some(Box::new(UnconfiguredStream)),
        }
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

impl PolicyRoot {
    fn load(&mut self, policy: Policy) -> bool {
        // The keyring comes from the VM's environment (WASI environ: Envoy
        // `host_env_keys`). A policy whose keys cannot be loaded is refused
        // like an invalid one: no field rule may run without its keys.
        let keyring = match &policy.keys {
            Some(source) => match source.load(|name| std::env::var(name).ok()) {
                Ok(ring) => Some(ring),
                Err(e) => return refuse(&e),
            },
            None => None,
        };
        let logging = &policy.logging;
        let (key, key_problem) = match logging.load_key() {
            Ok(key) => (Some(key), None),
            // Without a key, logs still carry no PII (placeholders instead of
            // pseudonyms) but are not sealed; the operator decides whether
            // that is acceptable with `require_log_key`.
            Err(e) if logging.require_log_key => return refuse(&e),
            Err(e) => (None, Some(e)),
        };
        // Canaries and per-client counters need the log key (digests,
        // pseudonyms): without it they could not run, so the policy is refused.
        if let Err(e) = dpp_core::monitor::require_log_key(&policy, key.is_some()) {
            return refuse(&e);
        }
        let canaries = key
            .as_ref()
            .and_then(|k| dpp_core::monitor::Canaries::new(&policy, k));
        let scrubber = logging.scrubber(key.as_ref(), policy.selector_leaf_names());
        let chain = LogChain::new(worker_id(), key.as_ref().map(|k| k.chain_key()));
        // The key itself is dropped (and zeroized) here; only derived keys live on.
        drop(key);
        crate::logging::define_metrics();
        let sink = Rc::new(LogSink::new(chain, logging.plugin_log));
        crate::logging::emit(
            &SecurityEvent::new(EventKind::PolicyLoaded)
                .policy_sha256(&policy.sha256)
                .detail(format!("{} routes", policy.routes.len())),
        );
        for warning in dpp_core::transport::startup_warnings(&policy) {
            crate::logging::emit(&warning);
        }
        if policy.keys.as_ref().is_some_and(|k| k.is_inline()) {
            // Said at every start, so nobody ships a test policy to
            // production unnoticed.
            host::log(
                Level::Warn,
                "dpp-guard: WARNING field-encryption keys are inline in the plugin \
                 configuration (testing only): Envoy's admin /config_dump prints them",
            );
            crate::logging::emit(
                &SecurityEvent::new(EventKind::InlineKeysInUse).detail("keys.inline"),
            );
        }
        if let Some(e) = key_problem {
            crate::logging::emit(
                &SecurityEvent::new(EventKind::LogKeyUnavailable)
                    .detail(format!("{}: {}", e.field, e.problem)),
            );
        }
        self.guard = Some(Rc::new(
            Guard::new(policy, keyring, scrubber).with_canaries(canaries),
        ));
        self.sink = Some(sink);
        true
    }
}

/// Returning false makes Envoy refuse the plugin: with the filter's
/// fail_open off, every request then gets a 5xx instead of passing
/// unfiltered. One line names the field; the event follows.
fn refuse(e: &PolicyError) -> bool {
    host::log(Level::Critical, &format!("dpp-guard: {e}"));
    crate::logging::emit(&SecurityEvent::new(EventKind::PolicyRejected).detail(e.field.clone()));
    false
}

/// A random id for this worker's log chain: records of different workers
/// (and of successive plugin loads) form separate chains.
fn worker_id() -> String {
    let mut bytes = [0u8; 8];
    if getrandom::fill(&mut bytes).is_err() {
        // No randomness: fall back to the clock, still unique per load.
        bytes = host::now_unix_nanos().unwrap_or(0).to_le_bytes();
    }
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
