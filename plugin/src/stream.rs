//! One HTTP stream under the policy: request in, decision, rewrite, log.

use std::rc::Rc;

use dpp_core::crypto::Keyring;
use dpp_core::policy::{Direction, Route};
use dpp_core::protect::{self, BodyFailure};
use dpp_core::{LocalReply, Policy, RequestDecision, RequestFacts};
use proxy_wasm::traits::{Context, HttpContext};
use proxy_wasm::types::{Action, LogLevel};

use crate::body::{BodyGuard, Step};
use crate::log;
use crate::transport_watch::{self, PlaintextWatch};

/// Marks a message whose body dpp_guard holds, for the hold filters of
/// envoy/dpp-guard-fields.yaml that keep its headers back until the body is
/// rewritten (Envoy gives no body to a Wasm filter that paused headers).
const HOLD_HEADER: &str = "x-dpp-guard-hold";

/// One HTTP request/response under the policy.
pub struct GuardedStream {
    policy: Rc<Policy>,
    keyring: Option<Rc<Keyring>>,
    /// Index of the policy route covering this stream, if any.
    route: Option<usize>,
    /// The request method, for events (normalised there).
    method: String,
    request_body: BodyGuard,
    response_body: BodyGuard,
    /// Set once a local reply was sent: later callbacks do nothing.
    refused: bool,
    /// Defence in depth against plaintext upstreams the guard did not stop.
    plaintext_watch: PlaintextWatch,
}

impl Context for GuardedStream {}

impl HttpContext for GuardedStream {
    fn on_http_request_headers(&mut self, _num_headers: usize, end_of_stream: bool) -> Action {
        let host = self
            .get_http_request_header(":authority")
            .unwrap_or_default();
        let path = self.get_http_request_header(":path").unwrap_or_default();
        let method = self.get_http_request_header(":method").unwrap_or_default();
        let route_name = self
            .get_property(vec!["xds", "route_name"])
            .and_then(|v| String::from_utf8(v).ok());
        let facts = RequestFacts {
            host: &host,
            path: &path,
            method: &method,
            route_name: route_name.as_deref(),
        };

        let policy = Rc::clone(&self.policy);
        let route = match policy.decide_request(&facts) {
            RequestDecision::Unprotected => return Action::Continue,
            RequestDecision::Refuse { reply, event, .. } => {
                log(LogLevel::Warn, &event.to_log_line());
                self.refused = true;
                self.send_local_reply(&reply);
                return Action::Pause;
            }
            RequestDecision::Proceed { route } => route,
        };
        if let Some((reply, event)) = transport_watch::downstream_refusal(&policy, route, &method) {
            log(LogLevel::Warn, &event.to_log_line());
            self.refused = true;
            self.send_local_reply(&reply);
            return Action::Pause;
        }
        self.route = policy.routes.iter().position(|r| std::ptr::eq(r, route));
        self.method = method;

        if route.fields(Direction::Response).is_some() {
            // A compressed response could not be inspected (and would be
            // refused): ask the upstream for identity encoding.
            self.set_http_request_header("accept-encoding", None);
        }
        let mut guard = std::mem::take(&mut self.request_body);
        let step = guard.on_headers(route, Direction::Request, end_of_stream, |name| {
            self.get_http_request_header(name)
        });
        self.request_body = guard;
        match step {
            Step::Pass => Action::Continue,
            Step::Hold => {
                // The rewritten body has another length; Envoy re-frames it.
                // Headers must continue: Envoy delivers no body to a filter
                // that paused the headers (istio/istio#30213), so the body
                // is held in the body callbacks instead.
                self.set_http_request_header("content-length", None);
                self.set_http_request_header(HOLD_HEADER, Some("1"));
                Action::Continue
            }
            Step::Refuse(f) => self.refuse(route, Direction::Request, f),
        }
    }

    fn on_http_request_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        self.on_body(Direction::Request, body_size, end_of_stream)
    }

    fn on_http_response_headers(&mut self, _num_headers: usize, end_of_stream: bool) -> Action {
        self.plaintext_watch.check(&self.policy, "response");
        if self.refused {
            return Action::Continue;
        }
        let policy = Rc::clone(&self.policy);
        let Some(route) = self.route.and_then(|i| policy.routes.get(i)) else {
            return Action::Continue;
        };
        for (name, value) in route.response_header_edits().set {
            self.set_http_response_header(name, Some(value));
        }
        let mut guard = std::mem::take(&mut self.response_body);
        let step = guard.on_headers(route, Direction::Response, end_of_stream, |name| {
            self.get_http_response_header(name)
        });
        self.response_body = guard;
        match step {
            Step::Pass => Action::Continue,
            Step::Hold => {
                self.set_http_response_header("content-length", None);
                self.set_http_response_header(HOLD_HEADER, Some("1"));
                Action::Continue
            }
            Step::Refuse(f) => self.refuse(route, Direction::Response, f),
        }
    }

    fn on_http_response_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        self.on_body(Direction::Response, body_size, end_of_stream)
    }

    fn on_log(&mut self) {
        self.plaintext_watch.check(&self.policy, "log");
    }
}

impl GuardedStream {
    pub fn new(policy: Rc<Policy>, keyring: Option<Rc<Keyring>>) -> Self {
        GuardedStream {
            policy,
            keyring,
            route: None,
            method: String::new(),
            request_body: BodyGuard::default(),
            response_body: BodyGuard::default(),
            refused: false,
            plaintext_watch: PlaintextWatch::default(),
        }
    }

    /// Buffers a protected body until its end, then rewrites it in place.
    fn on_body(&mut self, dir: Direction, body_size: usize, end_of_stream: bool) -> Action {
        if self.refused {
            // After a refusal the only response is our own local reply,
            // which passes through these callbacks too: let it through.
            // Request bytes stay held.
            return match dir {
                Direction::Request => Action::Pause,
                Direction::Response => Action::Continue,
            };
        }
        let policy = Rc::clone(&self.policy);
        let Some(route) = self.route.and_then(|i| policy.routes.get(i)) else {
            return Action::Continue;
        };
        let guard = match dir {
            Direction::Request => &self.request_body,
            Direction::Response => &self.response_body,
        };
        match guard.on_body(route, body_size) {
            Step::Pass => return Action::Continue,
            Step::Refuse(f) => return self.refuse(route, dir, f),
            Step::Hold if !end_of_stream => return Action::Pause,
            Step::Hold => {}
        }
        let body = match dir {
            Direction::Request => self.get_http_request_body(0, body_size),
            Direction::Response => self.get_http_response_body(0, body_size),
        }
        .unwrap_or_default();
        if body.is_empty() {
            return Action::Continue;
        }
        // The keyring is loaded whenever a route has rules (on_configure
        // refuses the policy otherwise); its absence here is still refused.
        let (Some(rules), Some(keyring)) = (route.fields(dir), self.keyring.as_deref()) else {
            return self.refuse(route, dir, BodyFailure::Seal);
        };
        match protect::rewrite(rules, keyring, &body) {
            Ok(None) => Action::Continue,
            Ok(Some(new)) => {
                match dir {
                    Direction::Request => self.set_http_request_body(0, body_size, &new),
                    Direction::Response => self.set_http_response_body(0, body_size, &new),
                }
                Action::Continue
            }
            Err(f) => self.refuse(route, dir, f),
        }
    }

    /// Fails closed: a JSON error reply, a security event, nothing forwarded.
    fn refuse(&mut self, route: &Route, dir: Direction, failure: BodyFailure) -> Action {
        let (reply, event) = failure.reply(dir, &route.name, &self.method);
        log(LogLevel::Warn, &event.to_log_line());
        self.refused = true;
        self.send_local_reply(&reply);
        Action::Pause
    }

    fn send_local_reply(&self, reply: &LocalReply) {
        self.send_http_response(
            reply.status,
            vec![
                ("content-type", LocalReply::CONTENT_TYPE),
                ("cache-control", "no-store"),
            ],
            Some(reply.body.as_bytes()),
        );
    }
}
