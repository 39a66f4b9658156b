//! dpp-guard as a proxy-wasm filter.
//!
//! This crate is glue: it reads facts from Envoy, asks `dpp_core` what to do,
//! and applies the answer. One small context type per concern:
//! [`root::PolicyRoot`] owns the policy for a worker, [`stream::GuardedStream`]
//! follows one HTTP request through its life.

mod body;
mod root;
mod stream;

use proxy_wasm::types::LogLevel;

/// The root id Envoy's configuration must name for this filter.
pub const ROOT_ID: &str = "dpp_guard";

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Info);
    proxy_wasm::set_root_context(|_| -> Box<dyn proxy_wasm::traits::RootContext> { Box::new(root::PolicyRoot::default()) });
}}

/// Logging must never fail the request path; a lost log line is the lesser harm.
pub(crate) fn log(level: LogLevel, message: &str) {
    let _ = proxy_wasm::hostcalls::log(level, message);
}
