//! The root context: loads and holds the worker's policy and keyring.

use std::rc::Rc;

use dpp_core::crypto::Keyring;
use dpp_core::{EventKind, Policy, PolicyError, SecurityEvent};
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{ContextType, LogLevel};

use crate::log;
use crate::stream::GuardedStream;

/// Holds the worker's compiled policy and keyring; hands them to every stream.
#[derive(Default)]
pub struct PolicyRoot {
    policy: Option<Rc<Policy>>,
    keyring: Option<Rc<Keyring>>,
}

impl Context for PolicyRoot {}

impl RootContext for PolicyRoot {
    fn on_configure(&mut self, _plugin_configuration_size: usize) -> bool {
        let config = self.get_plugin_configuration().unwrap_or_default();
        match load(&config) {
            Ok((policy, keyring)) => {
                if policy.keys.as_ref().is_some_and(|k| k.is_inline()) {
                    // Said at every start, so nobody ships a test policy
                    // to production unnoticed.
                    log(
                        LogLevel::Warn,
                        "dpp-guard: WARNING keys are inline in the plugin configuration \
                         (testing only): Envoy's admin /config_dump prints them",
                    );
                    let event =
                        SecurityEvent::new(EventKind::InlineKeysInUse).detail("keys.inline");
                    log(LogLevel::Warn, &event.to_log_line());
                }
                let event = SecurityEvent::new(EventKind::PolicyLoaded)
                    .detail(format!("{} routes", policy.routes.len()));
                log(LogLevel::Info, &event.to_log_line());
                for warning in dpp_core::transport::startup_warnings(&policy) {
                    log(LogLevel::Warn, &warning.to_log_line());
                }
                self.policy = Some(Rc::new(policy));
                self.keyring = keyring.map(Rc::new);
                true
            }
            Err(e) => {
                // Returning false makes Envoy refuse the plugin: with the
                // filter's fail_open off, every request then gets a 5xx
                // instead of passing unfiltered.
                log(LogLevel::Critical, &format!("dpp-guard: {e}"));
                let event = SecurityEvent::new(EventKind::PolicyRejected).detail(e.field.clone());
                log(LogLevel::Critical, &event.to_log_line());
                false
            }
        }
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        let policy = self.policy.clone()?;
        Some(Box::new(GuardedStream::new(policy, self.keyring.clone())))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

/// The policy, and its keyring from the VM's environment (WASI environ:
/// Envoy `host_env_keys`). A policy whose keys cannot be loaded is refused
/// like an invalid one: no rule may run without its keys.
fn load(config: &[u8]) -> Result<(Policy, Option<Keyring>), PolicyError> {
    let policy = Policy::from_json(config)?;
    let keyring = match &policy.keys {
        Some(source) => Some(source.load(|name| std::env::var(name).ok())?),
        None => None,
    };
    Ok((policy, keyring))
}
