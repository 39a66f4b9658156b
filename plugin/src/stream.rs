//! One HTTP stream under the policy: request in, decision, rewrite, log.

use std::rc::Rc;

use dpp_core::{LocalReply, Policy, RequestDecision, RequestFacts};
use proxy_wasm::traits::{Context, HttpContext};
use proxy_wasm::types::{Action, LogLevel};

use crate::log;
use crate::transport_watch::{self, PlaintextWatch};

/// One HTTP request/response under the policy.
pub struct GuardedStream {
    policy: Rc<Policy>,
    /// Index of the policy route covering this stream, if any.
    route: Option<usize>,
    /// Defence in depth against plaintext upstreams the guard did not stop.
    plaintext_watch: PlaintextWatch,
}

impl Context for GuardedStream {}

impl HttpContext for GuardedStream {
    fn on_http_request_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
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

        match self.policy.decide_request(&facts) {
            RequestDecision::Unprotected => Action::Continue,
            RequestDecision::Proceed { route } => {
                if let Some((reply, event)) =
                    transport_watch::downstream_refusal(&self.policy, route, &method)
                {
                    log(LogLevel::Warn, &event.to_log_line());
                    self.send_local_reply(&reply);
                    return Action::Pause;
                }
                self.route = self
                    .policy
                    .routes
                    .iter()
                    .position(|r| std::ptr::eq(r, route));
                Action::Continue
            }
            RequestDecision::Refuse { reply, event, .. } => {
                log(LogLevel::Warn, &event.to_log_line());
                self.send_local_reply(&reply);
                Action::Pause
            }
        }
    }

    fn on_http_response_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        self.plaintext_watch.check(&self.policy, "response");
        if let Some(route) = self.route.and_then(|i| self.policy.routes.get(i)) {
            for (name, value) in route.response_header_edits().set {
                self.set_http_response_header(name, Some(value));
            }
        }
        Action::Continue
    }

    fn on_log(&mut self) {
        self.plaintext_watch.check(&self.policy, "log");
    }
}

impl GuardedStream {
    pub fn new(policy: Rc<Policy>) -> Self {
        GuardedStream {
            policy,
            route: None,
            plaintext_watch: PlaintextWatch::default(),
        }
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
