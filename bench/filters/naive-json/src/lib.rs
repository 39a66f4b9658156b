//! Benchmark reference (c): the parse-and-serialize floor.
//!
//! Buffers the whole request body, parses it into a `serde_json::Value`,
//! serializes it again and replaces the body. Any filter that rewrites JSON
//! fields "the obvious way" pays at least this much; dpp-guard's protected
//! path is measured against it.

use proxy_wasm::traits::{Context, HttpContext};
use proxy_wasm::types::Action;

proxy_wasm::main! {{
    proxy_wasm::set_http_context(|_, _| -> Box<dyn HttpContext> { Box::new(NaiveJson) });
}}

struct NaiveJson;

impl Context for NaiveJson {}

impl HttpContext for NaiveJson {
    fn on_http_request_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        // The body length changes; Envoy recomputes framing without it.
        self.set_http_request_header("content-length", None);
        Action::Continue
    }

    fn on_http_request_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        if !end_of_stream {
            // Pause = buffer: Envoy calls again with the whole body at the end.
            return Action::Pause;
        }
        let Some(body) = self.get_http_request_body(0, body_size) else {
            return Action::Continue;
        };
        match serde_json::from_slice::<serde_json::Value>(&body)
            .and_then(|v| serde_json::to_vec(&v))
        {
            Ok(out) => {
                self.set_http_request_body(0, body_size, &out);
                Action::Continue
            }
            Err(_) => {
                self.send_http_response(400, vec![], Some(b"{\"error\":\"bad json\"}"));
                Action::Pause
            }
        }
    }
}
