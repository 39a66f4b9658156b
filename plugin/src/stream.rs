//! One HTTP stream: each callback hands Envoy's facts to the stream's
//! [`Exchange`] (dpp_core decides) and applies the [`Effects`] it returns.

use std::rc::Rc;

use dpp_core::stream::{Effects, Exchange, Flow, HeaderEdit, HostFault};
use dpp_core::LocalReply;
use proxy_wasm::traits::{Context, HttpContext};
use proxy_wasm::types::Action;

use crate::host::{self, buffer, map, stream};
use crate::logging::{log_event, LogSink};
use crate::metrics;
use crate::timing::{self, timed, Span};
use crate::views::{HostBody, HostHeaders, HostProperties, HostShared};

/// Where the effects of a callback land.
#[derive(Clone, Copy)]
struct Target {
    headers: u32,
    body: u32,
    stream: u32,
}

const REQUEST: Target = Target {
    headers: map::REQUEST_HEADERS,
    body: buffer::REQUEST_BODY,
    stream: stream::REQUEST,
};

const RESPONSE: Target = Target {
    headers: map::RESPONSE_HEADERS,
    body: buffer::RESPONSE_BODY,
    stream: stream::RESPONSE,
};

/// One HTTP request/response under the policy.
pub struct GuardedStream {
    exchange: Exchange,
    sink: Rc<LogSink>,
}

impl GuardedStream {
    pub fn new(exchange: Exchange, sink: Rc<LogSink>) -> Self {
        GuardedStream { exchange, sink }
    }

    /// Applies one phase's effects in order: events and counters (they
    /// happened), header edits, the body, the local reply, a reset, the
    /// access record. An effect the host refuses is handed back to the
    /// exchange, whose answer (a refusal, or a reset if the refusal itself
    /// failed) is applied instead: nothing passes on a host error.
    fn apply(&mut self, fx: Effects, at: Target) -> Action {
        for event in &fx.events {
            log_event(event);
        }
        for counter in &fx.counters {
            metrics::increment(counter);
        }
        if let Err(fault) = apply_changes(&fx, at) {
            let recovery = self.exchange.host_failed(fault);
            return self.apply(recovery, at);
        }
        if fx.reset {
            // Nothing else is left to do if even this fails; the stream
            // stays paused.
            let _ = host::close_stream(at.stream);
        }
        if let Some(record) = fx.record {
            self.sink.access(*record);
        }
        match fx.flow {
            Flow::Continue => Action::Continue,
            Flow::Pause => Action::Pause,
        }
    }
}

fn apply_changes(fx: &Effects, at: Target) -> Result<(), HostFault> {
    for edit in &fx.header_edits {
        match edit {
            HeaderEdit::Set(name, value) => host::set_header(at.headers, name, value)?,
            HeaderEdit::Remove(name) => host::remove_header(at.headers, name)?,
        }
    }
    if let Some(body) = &fx.body {
        host::set_buffer_bytes(at.body, 0, body.len, &body.bytes)?;
    }
    if let Some(reply) = &fx.reply {
        send_local_reply(reply, &[])?;
    }
    Ok(())
}

/// Sends a local reply with the JSON error body; `extra` headers after the
/// ones every reply carries.
pub fn send_local_reply(reply: &LocalReply, extra: &[(&str, &str)]) -> Result<(), HostFault> {
    let mut headers = reply.headers().to_vec();
    headers.extend(reply.extra_headers.iter().map(|(n, v)| (*n, v.as_str())));
    headers.extend_from_slice(extra);
    host::send_local_response(reply.status, &headers, reply.body.as_bytes())
}

impl Context for GuardedStream {}

impl HttpContext for GuardedStream {
    fn on_http_request_headers(&mut self, _num_headers: usize, end_of_stream: bool) -> Action {
        let mut headers = HostHeaders::new(map::REQUEST_HEADERS);
        timed(Span::RequestHeaders, || {
            let fx = self.exchange.on_request_headers(
                &mut headers,
                &mut HostProperties,
                &mut HostShared,
                end_of_stream,
            );
            self.apply(fx, REQUEST)
        })
    }

    fn on_http_request_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        let mut body = HostBody::new(buffer::REQUEST_BODY);
        timed(Span::RequestBody, || {
            let fx = self
                .exchange
                .on_request_body(body_size, end_of_stream, &mut body);
            self.apply(fx, REQUEST)
        })
    }

    fn on_http_request_trailers(&mut self, _num_trailers: usize) -> Action {
        timed(Span::RequestTrailers, || {
            let fx = self
                .exchange
                .on_request_trailers(&mut HostBody::new(buffer::REQUEST_BODY));
            self.apply(fx, REQUEST)
        })
    }

    fn on_http_response_headers(&mut self, _num_headers: usize, end_of_stream: bool) -> Action {
        let mut headers = HostHeaders::new(map::RESPONSE_HEADERS);
        timed(Span::ResponseHeaders, || {
            let fx = self.exchange.on_response_headers(
                &mut headers,
                &mut HostProperties,
                &mut HostShared,
                end_of_stream,
            );
            self.apply(fx, RESPONSE)
        })
    }

    fn on_http_response_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        let mut body = HostBody::new(buffer::RESPONSE_BODY);
        timed(Span::ResponseBody, || {
            let fx = self
                .exchange
                .on_response_body(body_size, end_of_stream, &mut body);
            self.apply(fx, RESPONSE)
        })
    }

    fn on_http_response_trailers(&mut self, _num_trailers: usize) -> Action {
        timed(Span::ResponseTrailers, || {
            let fx = self
                .exchange
                .on_response_trailers(&mut HostBody::new(buffer::RESPONSE_BODY));
            self.apply(fx, RESPONSE)
        })
    }

    fn on_log(&mut self) {
        timed(Span::Log, || {
            let fx = timed(Span::LogDecide, || {
                self.exchange.on_log(&mut HostProperties, &mut HostShared)
            });
            self.apply(fx, RESPONSE);
        });
        timing::stream_done();
    }
}

/// The stream of a root whose policy is not loaded (Envoy does not route
/// streams to a plugin that refused its configuration, but if one arrives
/// it is answered, never passed).
pub struct UnconfiguredStream;

impl Context for UnconfiguredStream {}

impl HttpContext for UnconfiguredStream {
    fn on_http_request_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        if send_local_reply(&LocalReply::policy_not_loaded(), &[]).is_err() {
            let _ = host::close_stream(stream::REQUEST);
        }
        Action::Pause
    }

    fn on_http_request_body(&mut self, _body_size: usize, _end_of_stream: bool) -> Action {
        Action::Pause
    }

    fn on_http_request_trailers(&mut self, _num_trailers: usize) -> Action {
        Action::Pause
    }
}
