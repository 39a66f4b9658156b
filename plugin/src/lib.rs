//! dpp-guard as a proxy-wasm filter.
//!
//! This crate is glue: it reads facts from Envoy, asks `dpp_core` what to do,
//! and applies the answer. One small context type per concern:
//! [`root::PolicyRoot`] owns the policy for a worker, [`stream::GuardedStream`]
//! follows one HTTP request through its life, [`logging::LogSink`] turns
//! events and access records into scrubbed log output. The upstream TLS guard
//! ([`upstream_guard`], root id `dpp_upstream_guard`) runs from the same
//! module; [`dispatch::DispatchRoot`] picks the root type by root id.

// Never panic outside tests: errors are values (workspace lints in Cargo.toml).
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]

mod dispatch;
// The proxy-wasm ABI calls: the crate's one FFI boundary, so the one place
// unsafe code is allowed (workspace lints deny it elsewhere).
#[allow(unsafe_code)]
mod host;
mod logging;
mod metrics;
mod root;
mod stream;
mod timing;
mod upstream_guard;
mod views;

use proxy_wasm::types::LogLevel;

/// The root id Envoy's configuration must name for the policy filter.
pub const ROOT_ID: &str = dpp_core::wire::ROOT_ID;
/// The root id of the upstream TLS guard (same .wasm, upstream filter chain).
pub const UPSTREAM_GUARD_ROOT_ID: &str = upstream_guard::ROOT_ID;

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Info);
    proxy_wasm::set_root_context(|_| -> Box<dyn proxy_wasm::traits::RootContext> { Box::new(dispatch::DispatchRoot::default()) });
}}
