//! One HTTP stream under the policy: request in, decision, rewrite, log.

use std::rc::Rc;

use dpp_core::{
    Actions, EventKind, LocalReply, Policy, RequestDecision, RequestFacts, RequestLogFacts,
    SecurityEvent, TlsFacts,
};
use proxy_wasm::traits::{Context, HttpContext};
use proxy_wasm::types::Action;

use crate::logging::LogSink;
use crate::transport_watch::{self, PlaintextWatch};

/// One HTTP request/response under the policy.
pub struct GuardedStream {
    policy: Rc<Policy>,
    sink: Rc<LogSink>,
    /// Index of the policy route covering this stream, if any.
    route: Option<usize>,
    /// Defence in depth against plaintext upstreams the guard did not stop.
    plaintext_watch: PlaintextWatch,
    /// What the filter did; other features add to it, the access record reports it.
    pub actions: Actions,
    /// Request facts kept for the access record (raw: scrubbed at log time).
    log_facts: RequestLogFacts,
}

impl Context for GuardedStream {}

impl HttpContext for GuardedStream {
    fn on_http_request_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
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

        match self.policy.decide_request(&facts) {
            RequestDecision::Unprotected => Action::Continue,
            RequestDecision::Proceed { route } => {
                self.log_facts.policy_route = Some(route.name.clone());
                if let Some((reply, event)) =
                    transport_watch::downstream_refusal(&self.policy, route, &method)
                {
                    self.refuse(&reply, event);
                    return Action::Pause;
                }
                self.route = self
                    .policy
                    .routes
                    .iter()
                    .position(|r| std::ptr::eq(r, route));
                Action::Continue
            }
            RequestDecision::Refuse {
                route,
                reply,
                event,
            } => {
                self.log_facts.policy_route = Some(route.name.clone());
                self.refuse(&reply, event);
                Action::Pause
            }
        }
    }

    fn on_http_response_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        if self.plaintext_watch.check(&self.policy, "response") {
            self.actions.raised(EventKind::PlaintextUpstreamObserved);
        }
        if let Some(route) = self.route.and_then(|i| self.policy.routes.get(i)) {
            for (name, value) in route.response_header_edits().set {
                self.set_http_response_header(name, Some(value));
            }
        }
        Action::Continue
    }

    fn on_log(&mut self) {
        if self.plaintext_watch.check(&self.policy, "log") {
            self.actions.raised(EventKind::PlaintextUpstreamObserved);
        }
        self.complete_log_facts();
        self.sink.access(&self.log_facts, &self.actions);
    }
}

impl GuardedStream {
    pub fn new(policy: Rc<Policy>, sink: Rc<LogSink>) -> Self {
        GuardedStream {
            policy,
            sink,
            route: None,
            plaintext_watch: PlaintextWatch::default(),
            actions: Actions::default(),
            log_facts: RequestLogFacts::default(),
        }
    }

    /// Answers with the filter's own reply instead of forwarding, reports
    /// the event (joined to the access record by request id) and records
    /// both in the stream's actions.
    fn refuse(&mut self, reply: &LocalReply, event: SecurityEvent) {
        let event = match &self.log_facts.request_id {
            Some(id) => event.request_id(id),
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
