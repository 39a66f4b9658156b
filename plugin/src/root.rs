//! The root context: loads and holds the worker's policy.

use std::rc::Rc;

use dpp_core::{EventKind, Policy, SecurityEvent};
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{ContextType, LogLevel};

use crate::log;
use crate::stream::GuardedStream;

/// Holds the worker's compiled policy; hands it to every stream.
#[derive(Default)]
pub struct PolicyRoot {
    policy: Option<Rc<Policy>>,
}

impl Context for PolicyRoot {}

impl RootContext for PolicyRoot {
    fn on_configure(&mut self, _plugin_configuration_size: usize) -> bool {
        let config = self.get_plugin_configuration().unwrap_or_default();
        match Policy::from_json(&config) {
            Ok(policy) => {
                let event = SecurityEvent::new(EventKind::PolicyLoaded)
                    .detail(format!("{} routes", policy.routes.len()));
                log(LogLevel::Info, &event.to_log_line());
                for warning in dpp_core::transport::startup_warnings(&policy) {
                    log(LogLevel::Warn, &warning.to_log_line());
                }
                self.policy = Some(Rc::new(policy));
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
        Some(Box::new(GuardedStream::new(policy)))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}
