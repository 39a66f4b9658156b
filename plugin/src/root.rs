//! The root context: loads and holds the worker's policy, keyring and log sink.

use std::rc::Rc;

use dpp_core::access::chain::LogChain;
use dpp_core::crypto::Keyring;
use dpp_core::{EventKind, Policy, PolicyError, SecurityEvent};
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{ContextType, LogLevel};

use crate::log;
use crate::logging::LogSink;
use crate::stream::GuardedStream;

/// Holds the worker's compiled policy, keyring and log sink; hands them to
/// every stream.
#[derive(Default)]
pub struct PolicyRoot {
    policy: Option<Rc<Policy>>,
    keyring: Option<Rc<Keyring>>,
    sink: Option<Rc<LogSink>>,
}

impl Context for PolicyRoot {}

impl RootContext for PolicyRoot {
    fn on_configure(&mut self, _plugin_configuration_size: usize) -> bool {
        let config = self.get_plugin_configuration().unwrap_or_default();
        match Policy::from_json(&config) {
            Ok(policy) => self.load(policy),
            Err(e) => refuse(&e),
        }
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        let policy = self.policy.clone()?;
        let sink = self.sink.clone()?;
        Some(Box::new(GuardedStream::new(
            policy,
            self.keyring.clone(),
            sink,
        )))
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
                Ok(ring) => Some(Rc::new(ring)),
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
        let scrubber = logging.scrubber(key.as_ref(), std::iter::empty::<&str>());
        let chain = LogChain::new(worker_id(), key.as_ref().map(|k| k.chain_key()));
        // The key itself is dropped (and zeroized) here; only derived keys live on.
        drop(key);
        crate::logging::define_metrics();
        let sink = Rc::new(LogSink::new(
            scrubber,
            chain,
            logging.plugin_log,
            logging.request_headers.clone(),
            logging.principal_header.clone(),
        ));
        sink.emit(
            &SecurityEvent::new(EventKind::PolicyLoaded)
                .policy_sha256(&policy.sha256)
                .detail(format!("{} routes", policy.routes.len())),
        );
        for warning in dpp_core::transport::startup_warnings(&policy) {
            sink.emit(&warning);
        }
        if policy.keys.as_ref().is_some_and(|k| k.is_inline()) {
            // Said at every start, so nobody ships a test policy to
            // production unnoticed.
            log(
                LogLevel::Warn,
                "dpp-guard: WARNING field-encryption keys are inline in the plugin \
                 configuration (testing only): Envoy's admin /config_dump prints them",
            );
            sink.emit(&SecurityEvent::new(EventKind::InlineKeysInUse).detail("keys.inline"));
        }
        if let Some(e) = key_problem {
            sink.emit(
                &SecurityEvent::new(EventKind::LogKeyUnavailable)
                    .detail(format!("{}: {}", e.field, e.problem)),
            );
        }
        self.policy = Some(Rc::new(policy));
        self.keyring = keyring;
        self.sink = Some(sink);
        true
    }
}

/// Returning false makes Envoy refuse the plugin: with the filter's
/// fail_open off, every request then gets a 5xx instead of passing
/// unfiltered. One line names the field; the event follows.
fn refuse(e: &PolicyError) -> bool {
    log(LogLevel::Critical, &format!("dpp-guard: {e}"));
    crate::logging::emit(&SecurityEvent::new(EventKind::PolicyRejected).detail(e.field.clone()));
    false
}

/// A random id for this worker's log chain: records of different workers
/// (and of successive plugin loads) form separate chains.
fn worker_id() -> String {
    let mut bytes = [0u8; 8];
    if getrandom::fill(&mut bytes).is_err() {
        // No randomness: fall back to the clock, still unique per load.
        let nanos = proxy_wasm::hostcalls::get_current_time()
            .ok()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map_or(0, |d| d.as_nanos() as u64);
        bytes = nanos.to_le_bytes();
    }
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
