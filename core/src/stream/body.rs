//! The body concern of an exchange, per direction: whether a body is
//! buffered for a rewrite, and when it is complete.
//!
//! A body is buffered only when its route has field rules for its
//! direction; every other body streams through untouched. Envoy delivers no
//! body to a Wasm filter that paused the headers, so the headers of a
//! buffered body continue (without `content-length`, and marked for the
//! hold filters) and only the body is held. Everything decidable from the
//! headers (content type, content encoding, declared length) is therefore
//! refused in the headers phase, before anything is forwarded; failures
//! found in the body are refused in the body phase, where the body itself
//! is never forwarded.

use crate::policy::Route;
use crate::protect::{self, BodyFailure, BodyHeaders, BodyPlan};

/// What to do after the headers or a chunk of a body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Step {
    /// Nothing to do for this body: let it stream.
    Pass,
    /// Keep buffering the body.
    Hold,
    /// Refuse with this failure.
    Refuse(BodyFailure),
}

/// One direction's body.
#[derive(Debug, Default)]
pub(super) struct BodyGuard {
    buffering: bool,
    /// Bytes buffered so far (the host reports the whole buffered size).
    seen: usize,
    /// The body was rewritten (or refused): nothing left to do.
    done: bool,
}

impl BodyGuard {
    /// After the headers: `plan` is the headers' verdict (see
    /// [`protect::plan`]), computed only for a direction with field rules
    /// and a body.
    pub fn on_headers(&mut self, plan: Result<BodyPlan, BodyFailure>) -> Step {
        match plan {
            Err(f) => Step::Refuse(f),
            Ok(BodyPlan::Pass) => Step::Pass,
            Ok(BodyPlan::Buffer) => {
                self.buffering = true;
                Step::Hold
            }
        }
    }

    /// After a chunk: `body_size` is the whole buffered size so far.
    /// `Hold` until the end of the stream; then the caller rewrites the
    /// body and calls [`BodyGuard::finish`].
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

    /// Trailers arrived: the body is complete although no chunk said end of
    /// stream. `Some(size)` when a buffered body still awaits its rewrite
    /// (it must not pass as it is).
    pub fn pending_at_trailers(&self) -> Option<usize> {
        (self.buffering && !self.done).then_some(self.seen)
    }

    pub fn finish(&mut self) {
        self.done = true;
    }
}

/// The headers' verdict on a body, from the three headers that decide it.
pub(super) fn plan(
    route: &Route,
    content_type: Option<&str>,
    content_encoding: Option<&str>,
    content_length: Option<&str>,
) -> Result<BodyPlan, BodyFailure> {
    protect::plan(
        &route.body,
        &BodyHeaders {
            content_type,
            content_encoding,
            content_length,
        },
    )
}
