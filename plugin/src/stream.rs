//! One HTTP stream under the policy: request in, decision, rewrite, log.

use std::rc::Rc;

use dpp_core::crypto::Keyring;
use dpp_core::policy::{Direction, FieldAction, Route};
use dpp_core::protect::{self, BodyFailure};
use dpp_core::{
    Actions, EventKind, LocalReply, Policy, RequestDecision, RequestFacts, RequestHeaderEdits,
    RequestLogFacts, SecurityEvent, TlsFacts,
};
use proxy_wasm::traits::{Context, HttpContext};
use proxy_wasm::types::Action;

use dpp_core::wire::HOLD_HEADER;

use crate::body::{BodyGuard, Step};
use crate::logging::LogSink;
use crate::transport_watch::{self, PlaintextWatch};

/// One HTTP request/response under the policy.
pub struct GuardedStream {
    policy: Rc<Policy>,
    keyring: Option<Rc<Keyring>>,
    sink: Rc<LogSink>,
    /// Index of the policy route covering this stream, if any.
    route: Option<usize>,
    /// Defence in depth against plaintext upstreams the guard did not stop.
    plaintext_watch: PlaintextWatch,
    /// What the filter did; other features add to it, the access record reports it.
    pub actions: Actions,
    /// Request facts kept for the access record (raw: scrubbed at log time).
    log_facts: RequestLogFacts,
    request_body: BodyGuard,
    response_body: BodyGuard,
    /// Set once a local reply was sent: later callbacks let only that reply
    /// through.
    refused: bool,
}

impl Context for GuardedStream {}

impl HttpContext for GuardedStream {
    fn on_http_request_headers(&mut self, _num_headers: usize, end_of_stream: bool) -> Action {
        let host = self
            .get_http_request_header(":authority")
            .unwrap_or_default();
        let path = self.get_http_request_header(":path").unwrap_or_default();
        let method = self.get_http_request_header(":method").unwrap_or_default();
        let route_name = self.property_string(&["xds", "route_name"]);
        self.remember_request(&path, &method);
        let facts = RequestFacts {
            host: &host,
            path: &path,
            method: &method,
            route_name: route_name.as_deref(),
        };

        let policy = Rc::clone(&self.policy);
        let (route, edits) = match policy.decide_request(&facts) {
            RequestDecision::Unprotected { edits } => {
                self.apply_request_edits(&edits);
                return Action::Continue;
            }
            RequestDecision::Refuse {
                route,
                reply,
                event,
            } => {
                self.log_facts.policy_route = route.map(|r| r.name.clone());
                self.refuse(&reply, event);
                return Action::Pause;
            }
            RequestDecision::Proceed { route, edits } => (route, edits),
        };
        self.apply_request_edits(&edits);
        self.log_facts.policy_route = Some(route.name.clone());
        if let Some((reply, event)) = transport_watch::downstream_refusal(&policy, route, &method) {
            self.refuse(&reply, event);
            return Action::Pause;
        }
        self.route = policy.routes.iter().position(|r| std::ptr::eq(r, route));

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
            Step::Refuse(f) => self.refuse_body(route, Direction::Request, f),
        }
    }

    fn on_http_request_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        self.on_body(Direction::Request, body_size, end_of_stream)
    }

    fn on_http_request_trailers(&mut self, _num_trailers: usize) -> Action {
        self.on_trailers(Direction::Request)
    }

    fn on_http_response_headers(&mut self, _num_headers: usize, end_of_stream: bool) -> Action {
        if self.plaintext_watch.check(&self.policy, "response") {
            self.actions.raised(EventKind::PlaintextUpstreamObserved);
        }
        if self.refused {
            // Our own local reply.
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
            Step::Refuse(f) => self.refuse_body(route, Direction::Response, f),
        }
    }

    fn on_http_response_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        self.on_body(Direction::Response, body_size, end_of_stream)
    }

    fn on_http_response_trailers(&mut self, _num_trailers: usize) -> Action {
        self.on_trailers(Direction::Response)
    }

    fn on_log(&mut self) {
        if self.plaintext_watch.check(&self.policy, "log") {
            self.actions.raised(EventKind::PlaintextUpstreamObserved);
        }
        // A refused request is recorded like a protected one, route or not.
        let protected = self.log_facts.policy_route.is_some() || !self.actions.refusals.is_empty();
        if !self.policy.logging.access_records.covers(protected) {
            return;
        }
        self.complete_log_facts();
        self.sink.access(&self.log_facts, &self.actions);
    }
}

impl GuardedStream {
    pub fn new(policy: Rc<Policy>, keyring: Option<Rc<Keyring>>, sink: Rc<LogSink>) -> Self {
        GuardedStream {
            policy,
            keyring,
            sink,
            route: None,
            plaintext_watch: PlaintextWatch::default(),
            actions: Actions::default(),
            log_facts: RequestLogFacts::default(),
            request_body: BodyGuard::default(),
            response_body: BodyGuard::default(),
            refused: false,
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
            Direction::Request => &mut self.request_body,
            Direction::Response => &mut self.response_body,
        };
        match guard.on_body(route, body_size) {
            Step::Pass => return Action::Continue,
            Step::Refuse(f) => return self.refuse_body(route, dir, f),
            Step::Hold if !end_of_stream => return Action::Pause,
            Step::Hold => {}
        }
        self.finish_body(route, dir, body_size)
    }

    /// Trailers end a body too (HTTP/2, or HTTP/1 with trailers enabled): a
    /// body still held is rewritten now, never passed on as it is.
    fn on_trailers(&mut self, dir: Direction) -> Action {
        if self.refused {
            return match dir {
                Direction::Request => Action::Pause,
                Direction::Response => Action::Continue,
            };
        }
        let pending = match dir {
            Direction::Request => self.request_body.pending_at_trailers(),
            Direction::Response => self.response_body.pending_at_trailers(),
        };
        let policy = Rc::clone(&self.policy);
        match (pending, self.route.and_then(|i| policy.routes.get(i))) {
            (Some(size), Some(route)) => self.finish_body(route, dir, size),
            _ => Action::Continue,
        }
    }

    /// Rewrites the complete buffered body of `dir` in place, or refuses it.
    fn finish_body(&mut self, route: &Route, dir: Direction, body_size: usize) -> Action {
        match dir {
            Direction::Request => self.request_body.finish(),
            Direction::Response => self.response_body.finish(),
        }
        if body_size == 0 {
            return Action::Continue;
        }
        let body = match dir {
            Direction::Request => self.get_http_request_body(0, body_size),
            Direction::Response => self.get_http_response_body(0, body_size),
        }
        .unwrap_or_default();
        if body.len() != body_size {
            // Envoy could not hand over the buffered body: it cannot be
            // checked, so it does not pass.
            return self.refuse_body(route, dir, BodyFailure::Malformed);
        }
        // The keyring is loaded whenever a route has rules (on_configure
        // refuses the policy otherwise); its absence here is still refused.
        let (Some(rules), Some(keyring)) = (route.fields(dir), self.keyring.as_deref()) else {
            return self.refuse_body(route, dir, BodyFailure::Seal);
        };
        match protect::rewrite_counted(rules, keyring, &body) {
            Ok((new, fields)) => {
                match rules.action {
                    FieldAction::Encrypt => {
                        self.actions.fields_encrypted =
                            self.actions.fields_encrypted.saturating_add(fields)
                    }
                    FieldAction::Decrypt => {
                        self.actions.fields_decrypted =
                            self.actions.fields_decrypted.saturating_add(fields)
                    }
                }
                if let Some(new) = new {
                    match dir {
                        Direction::Request => self.set_http_request_body(0, body_size, &new),
                        Direction::Response => self.set_http_response_body(0, body_size, &new),
                    }
                }
                Action::Continue
            }
            Err(f) => self.refuse_body(route, dir, f),
        }
    }

    /// Header edits core decided on (a normalised `:path`).
    fn apply_request_edits(&self, edits: &RequestHeaderEdits) {
        for (name, value) in &edits.set {
            self.set_http_request_header(name, Some(value));
        }
    }

    /// Fails closed on a protected body: a JSON error reply, a security
    /// event, nothing of the body forwarded.
    fn refuse_body(&mut self, route: &Route, dir: Direction, failure: BodyFailure) -> Action {
        let method = self.log_facts.method.clone();
        let (reply, event) = failure.reply(dir, &route.name, &method);
        self.refuse(&reply, event);
        Action::Pause
    }

    /// Answers with the filter's own reply instead of forwarding, reports
    /// the event (joined to the access record by request id) and records
    /// both in the stream's actions.
    fn refuse(&mut self, reply: &LocalReply, event: SecurityEvent) {
        self.refused = true;
        let event = match &self.log_facts.request_id {
            Some(id) => event.scrubbed_request_id(id, &self.sink.scrubber),
            None => event,
        };
        self.sink.emit(&event);
        self.actions.raised(event.event);
        self.actions.refused(reply.code);
        self.send_local_reply(reply);
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

    fn property_string(&self, path: &[&str]) -> Option<String> {
        self.get_property(path.to_vec())
            .and_then(|v| String::from_utf8(v).ok())
            .filter(|s| !s.is_empty())
    }

    /// Envoy encodes integer properties as 8 little-endian bytes.
    fn property_u64(&self, path: &[&str]) -> Option<u64> {
        let v = self.get_property(path.to_vec())?;
        let bytes: [u8; 8] = v.get(..8)?.try_into().ok()?;
        Some(u64::from_le_bytes(bytes))
    }

    /// Request-side facts, read while the request headers are at hand.
    fn remember_request(&mut self, path: &str, method: &str) {
        let request_id = self.get_http_request_header("x-request-id");
        let wanted = self.sink.request_headers.clone();
        let headers = wanted
            .iter()
            .filter_map(|name| Some((name.clone(), self.get_http_request_header(name)?)))
            .collect();
        let principal = self
            .sink
            .principal_header
            .as_deref()
            .and_then(|h| self.get_http_request_header(h));
        let facts = &mut self.log_facts;
        facts.path = path.to_string();
        facts.method = method.to_string();
        facts.request_id = request_id;
        facts.headers = headers;
        facts.principal = principal;
    }

    /// Response-side facts, complete only at log time.
    fn complete_log_facts(&mut self) {
        let now = self
            .get_current_time()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        let status = self.property_u64(&["response", "code"]);
        let code_details = self.property_string(&["response", "code_details"]);
        let route_name = self.property_string(&["xds", "route_name"]);
        let cluster = self.property_string(&["xds", "cluster_name"]);
        let duration = self.property_u64(&["request", "duration"]);
        let request_bytes = self.property_u64(&["request", "total_size"]);
        let response_bytes = self.property_u64(&["response", "total_size"]);
        let downstream_tls = self.property_string(&["connection", "tls_version"]);
        let mtls = self
            .get_property(vec!["connection", "mtls"])
            .is_some_and(|v| v.first() == Some(&1));
        let upstream_tls = self.property_string(&["upstream", "tls_version"]);
        let client = self.property_string(&["source", "address"]);
        let peer = mtls
            .then(|| self.property_string(&["connection", "subject_peer_certificate"]))
            .flatten();
        let facts = &mut self.log_facts;
        facts.time_unix_nanos = now;
        facts.status = status;
        facts.code_details = code_details;
        facts.route_name = route_name;
        facts.upstream_cluster = cluster;
        facts.duration_nanos = duration;
        facts.request_bytes = request_bytes;
        facts.response_bytes = response_bytes;
        facts.tls = TlsFacts {
            downstream: downstream_tls,
            downstream_mtls: mtls,
            upstream: upstream_tls,
        };
        facts.client_address = client;
        if facts.principal.is_none() {
            facts.principal = peer;
        }
    }
}
