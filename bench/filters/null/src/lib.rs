//! Benchmark reference (b): the cheapest possible proxy-wasm HTTP filter.
//!
//! Every callback keeps the SDK default (continue), so what it measures is
//! the price of having a Wasm VM in the filter chain at all: context
//! creation and one host round-trip per callback.

use proxy_wasm::traits::{Context, HttpContext};

proxy_wasm::main! {{
    proxy_wasm::set_http_context(|_, _| -> Box<dyn HttpContext> { Box::new(NullStream) });
}}

struct NullStream;

impl Context for NullStream {}

impl HttpContext for NullStream {}
