//! A proxy-wasm module whose root context offers no HTTP context: it loads
//! and configures, but when a stream arrives the Rust SDK finds no context
//! type on the root and panics inside `proxy_on_context_create`. Envoy
//! answers that stream itself; the fidelity scenario
//! tests/scenarios/fidelity-root-only-module.yaml holds the harness to what
//! Envoy does. Not a product.

use proxy_wasm::traits::{Context, RootContext};
use proxy_wasm::types::LogLevel;

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Info);
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> { Box::new(RootOnly) });
}}

struct RootOnly;

impl Context for RootOnly {}

impl RootContext for RootOnly {
    fn on_configure(&mut self, _size: usize) -> bool {
        proxy_wasm::hostcalls::log(LogLevel::Info, "root-only: configured, no http context").ok();
        true
    }
    // No get_type / create_http_context: the SDK's default says "no
    // context type", so a new stream makes the SDK panic.
}
