//! One .wasm, several filters: the SDK's `main!` installs a single root
//! context factory for every root id, so the root context decides what it
//! is once Envoy tells it its root id (`plugin_root_id`, readable from
//! on_vm_start / on_configure), then forwards every callback.

use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::ContextType;

use crate::host::{self, Level};

use crate::root::PolicyRoot;
use crate::upstream_guard::{self, UpstreamGuardRoot};

/// The root context of either filter this module provides.
#[derive(Default)]
pub enum DispatchRoot {
    /// Created, root id not read yet.
    #[default]
    Unresolved,
    /// `dpp_guard` (and any other root id): the downstream policy filter.
    Policy(PolicyRoot),
    /// `dpp_upstream_guard`: the upstream TLS guard.
    UpstreamGuard(UpstreamGuardRoot),
}

impl DispatchRoot {
    fn resolve(&mut self) {
        if !matches!(self, DispatchRoot::Unresolved) {
            return;
        }
        let root_id = host::property_string(&["plugin_root_id"]).unwrap_or_default();
        *self = if root_id == upstream_guard::ROOT_ID {
            DispatchRoot::UpstreamGuard(UpstreamGuardRoot::default())
        } else {
            if root_id != crate::ROOT_ID {
                host::log(
                    Level::Warn,
                    &format!(
                        "dpp-guard: root id {root_id:?} is neither {:?} nor {:?}; running the policy filter",
                        crate::ROOT_ID,
                        upstream_guard::ROOT_ID
                    ),
                );
            }
            DispatchRoot::Policy(PolicyRoot::default())
        };
    }

    fn inner(&mut self) -> Option<&mut dyn RootContext> {
        match self {
            DispatchRoot::Unresolved => None,
            DispatchRoot::Policy(r) => Some(r),
            DispatchRoot::UpstreamGuard(r) => Some(r),
        }
    }

    fn inner_ref(&self) -> Option<&dyn RootContext> {
        match self {
            DispatchRoot::Unresolved => None,
            DispatchRoot::Policy(r) => Some(r),
            DispatchRoot::UpstreamGuard(r) => Some(r),
        }
    }
}

impl Context for DispatchRoot {
    fn on_http_call_response(
        &mut self,
        token_id: u32,
        num_headers: usize,
        body_size: usize,
        num_trailers: usize,
    ) {
        if let Some(r) = self.inner() {
            r.on_http_call_response(token_id, num_headers, body_size, num_trailers);
        }
    }

    fn on_grpc_call_response(&mut self, token_id: u32, status_code: u32, response_size: usize) {
        if let Some(r) = self.inner() {
            r.on_grpc_call_response(token_id, status_code, response_size);
        }
    }

    fn on_done(&mut self) -> bool {
        self.inner().is_none_or(|r| r.on_done())
    }
}

impl RootContext for DispatchRoot {
    fn on_vm_start(&mut self, vm_configuration_size: usize) -> bool {
        self.resolve();
        self.inner()
            .is_none_or(|r| r.on_vm_start(vm_configuration_size))
    }

    fn on_configure(&mut self, plugin_configuration_size: usize) -> bool {
        self.resolve();
        self.inner()
            .is_some_and(|r| r.on_configure(plugin_configuration_size))
    }

    fn on_tick(&mut self) {
        if let Some(r) = self.inner() {
            r.on_tick();
        }
    }

    fn on_queue_ready(&mut self, queue_id: u32) {
        if let Some(r) = self.inner() {
            r.on_queue_ready(queue_id);
        }
    }

    fn on_log(&mut self) {
        if let Some(r) = self.inner() {
            r.on_log();
        }
    }

    fn create_http_context(&self, context_id: u32) -> Option<Box<dyn HttpContext>> {
        self.inner_ref()?.create_http_context(context_id)
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}
