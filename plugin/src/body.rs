//! The body concern of a stream: buffering and rewriting protected bodies.
//!
//! A body is buffered only when its route has field rules for its
//! direction; every other body streams through untouched. The headers of a
//! buffered body lose `content-length` (the rewritten body has another
//! length) and continue: Envoy delivers no body to a Wasm filter that
//! paused the headers. Everything decidable from the headers (content type,
//! content encoding, declared length) is therefore refused in the headers
//! callback, before anything is forwarded; failures found in the body are
//! refused in the body callback, where the body itself is never forwarded.

use dpp_core::policy::{Direction, Route};
use dpp_core::protect::{self, BodyFailure, BodyHeaders, BodyPlan};

/// What the stream must do after a headers or body callback.
pub enum Step {
    /// Nothing to do for this body: let it stream.
    Pass,
    /// Keep buffering the body (headers continue).
    Hold,
    /// Refuse with this failure (the caller sends the reply).
    Refuse(BodyFailure),
}

/// Per direction: whether the body is being buffered for a rewrite.
#[derive(Default)]
pub struct BodyGuard {
    buffering: bool,
    /// Bytes buffered so far (Envoy reports the whole buffered size).
    seen: usize,
    /// The body was rewritten (or refused): nothing left to do.
    done: bool,
}

impl BodyGuard {
    /// Headers callback. `header` reads one header of this direction.
    pub fn on_headers(
        &mut self,
        route: &Route,
        dir: Direction,
        end_of_stream: bool,
        header: impl Fn(&str) -> Option<String>,
    ) -> Step {
        if route.fields(dir).is_none() || end_of_stream {
            // No rules, or no body at all: nothing to protect.
            return Step::Pass;
        }
        let (ct, ce, cl) = (
            header("content-type"),
            header("content-encoding"),
            header("content-length"),
        );
        let headers = BodyHeaders {
            content_type: ct.as_deref(),
            content_encoding: ce.as_deref(),
            content_length: cl.as_deref(),
        };
        match protect::plan(&route.body, &headers) {
            Err(f) => Step::Refuse(f),
            Ok(BodyPlan::Pass) => Step::Pass,
            Ok(BodyPlan::Buffer) => {
                self.buffering = true;
                Step::Hold
            }
        }
    }

    /// Body callback: `Hold` until the end of the stream, then the caller
    /// calls [`BodyGuard::finish`].
    pub fn on_body(&mut self, route: &Route, body_size: usize) -> Step {
        if !self.buffering || self.done {
            return Step::Pass;
        }
        self.seen = body_size;
        if body_size > route.body.max_bytes {
            return Step::Refuse(BodyFailure::TooLarge);
        }
        Step::Hold
    }

    /// Trailers arrived: the body is complete although no body callback
    /// said end of stream. `Some(size)` when a buffered body still awaits
    /// its rewrite (it must not pass as it is).
    pub fn pending_at_trailers(&self) -> Option<usize> {
        (self.buffering && !self.done).then_some(self.seen)
    }

    pub fn finish(&mut self) {
        self.done = true;
    }
}
