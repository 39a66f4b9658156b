//! [`Exchange`]: one HTTP request and its response under the policy, decided
//! phase by phase.

use std::rc::Rc;

use crate::access::{AccessRecord, Actions, RequestLogFacts, TlsFacts};
use crate::decision::{LocalReply, RequestDecision, RequestFacts, RequestHeaderEdits};
use crate::events::{EventKind, SecurityEvent};
use crate::monitor::{self, Counter};
use crate::policy::{ClusterName, Direction, FieldAction, Limit, Mode, Route};
use crate::protect::{self, BodyFailure};
use crate::wire::{HOLD_HEADER, PLAINTEXT_UPSTREAM_METRIC, THROTTLED_METRIC};

use super::body::{self, BodyGuard, Step};
use super::effects::{BodyReplacement, Effects, Flow};
use super::facts::{BodyView, HeaderView, HostFault, Property, PropertyCache, PropertySource};
use super::shared::{self, SharedStore};
use super::Guard;

mod access;
pub use access::{Subject, SubjectKind};

/// Where the exchange is in the stream's life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    Created,
    RequestHeaders,
    RequestBody,
    RequestTrailers,
    ResponseHeaders,
    ResponseBody,
    ResponseTrailers,
    Log,
}

impl Phase {
    /// The direction whose data this phase handles (`None` outside both).
    pub fn direction(self) -> Option<Direction> {
        match self {
            Phase::RequestHeaders | Phase::RequestBody | Phase::RequestTrailers => {
                Some(Direction::Request)
            }
            Phase::ResponseHeaders | Phase::ResponseBody | Phase::ResponseTrailers => {
                Some(Direction::Response)
            }
            Phase::Created | Phase::Log => None,
        }
    }
}

/// One HTTP request/response under the policy: every decision the filter
/// makes about a stream, with no I/O. The host adapter calls one method per
/// phase with views of what the host holds, and applies the [`Effects`]
/// each returns.
#[derive(Debug)]
pub struct Exchange {
    guard: Rc<Guard>,
    phase: Phase,
    /// Index of the policy route covering this stream, if any.
    route: Option<usize>,
    /// A local reply was sent: later phases let only that reply through.
    refused: bool,
    /// The plaintext watch looks at this stream at log time.
    watch: bool,
    request_body: BodyGuard,
    response_body: BodyGuard,
    props: PropertyCache,
    /// What the filter did; features add to it, the access record reports it.
    actions: Actions,
    /// `:method`, read for streams a route covers (events name it).
    method: String,
    /// `x-request-id`, read for streams a route covers, so events join the
    /// access record.
    request_id: Option<String>,
    /// Request facts for the access record; `Some` when this stream gets one.
    record: Option<Box<RequestLogFacts>>,
    /// Who made the request, as a pseudonym (monitoring counters and
    /// events): the access checks' subject, else the client address;
    /// computed on first need.
    subject: Option<String>,
    /// Canaries already reported for this stream (one event per canary
    /// per stream, wherever it showed up).
    canaries_seen: Vec<usize>,
    /// Principal, roles and subject, once the access checks ran.
    caller: access::Caller,
}

impl Exchange {
    pub(super) fn new(guard: Rc<Guard>) -> Exchange {
        Exchange {
            guard,
            phase: Phase::Created,
            route: None,
            refused: false,
            watch: false,
            request_body: BodyGuard::default(),
            response_body: BodyGuard::default(),
            props: PropertyCache::default(),
            actions: Actions::default(),
            method: String::new(),
            request_id: None,
            record: None,
            subject: None,
            canaries_seen: Vec::new(),
            caller: access::Caller::default(),
        }
    }

    pub fn phase(&self) -> Phase {
        self.phase
    }

    /// The policy route covering this stream, once the request headers
    /// were decided.
    pub fn route(&self) -> Option<&Route> {
        self.route.and_then(|i| self.guard.policy().routes.get(i))
    }

    /// A local reply answered this stream.
    pub fn refused(&self) -> bool {
        self.refused
    }

    /// What the filter did so far.
    pub fn actions(&self) -> &Actions {
        &self.actions
    }

    // ---- phases ---------------------------------------------------------

    /// Request headers: the route decision, downstream TLS, what the
    /// upstream may send back, and whether the request body is held.
    pub fn on_request_headers(
        &mut self,
        headers: &mut impl HeaderView,
        props: &mut impl PropertySource,
        shared: &mut impl SharedStore,
        end_of_stream: bool,
    ) -> Effects {
        self.phase = Phase::RequestHeaders;
        let mut fx = Effects::default();
        if let Err(fault) = self.request_headers(headers, props, shared, end_of_stream, &mut fx) {
            self.fail(fault, &mut fx);
        }
        fx
    }

    /// A request body chunk; `body_size` is everything buffered so far.
    pub fn on_request_body(
        &mut self,
        body_size: usize,
        end_of_stream: bool,
        body: &mut impl BodyView,
    ) -> Effects {
        self.phase = Phase::RequestBody;
        self.on_body(Direction::Request, body_size, end_of_stream, body)
    }

    /// Request trailers: they end a body too (a held body is rewritten now).
    pub fn on_request_trailers(&mut self, body: &mut impl BodyView) -> Effects {
        self.phase = Phase::RequestTrailers;
        self.on_trailers(Direction::Request, body)
    }

    /// Response headers: the route's header edits, whether the response
    /// body is held, and the service's 401/403 for lockouts.
    pub fn on_response_headers(
        &mut self,
        headers: &mut impl HeaderView,
        props: &mut impl PropertySource,
        shared: &mut impl SharedStore,
        end_of_stream: bool,
    ) -> Effects {
        self.phase = Phase::ResponseHeaders;
        if self.refused {
            // Our own local reply: nothing to decide, nothing to strip.
            return Effects::proceed();
        }
        let mut fx = Effects::default();
        if let Err(fault) = self.response_headers(headers, props, shared, end_of_stream, &mut fx) {
            self.fail(fault, &mut fx);
        }
        fx
    }

    /// A response body chunk.
    pub fn on_response_body(
        &mut self,
        body_size: usize,
        end_of_stream: bool,
        body: &mut impl BodyView,
    ) -> Effects {
        self.phase = Phase::ResponseBody;
        self.on_body(Direction::Response, body_size, end_of_stream, body)
    }

    pub fn on_response_trailers(&mut self, body: &mut impl BodyView) -> Effects {
        self.phase = Phase::ResponseTrailers;
        self.on_trailers(Direction::Response, body)
    }

    /// The stream is complete: the plaintext watch, the volume and
    /// unauthorized-answer counters, and the access record.
    pub fn on_log(
        &mut self,
        props: &mut impl PropertySource,
        shared: &mut impl SharedStore,
    ) -> Effects {
        let before = std::mem::replace(&mut self.phase, Phase::Log);
        let mut fx = Effects::default();
        if before == Phase::Created && self.guard.policy().logging.access_records.covers(false) {
            // The request never reached this filter (a filter before it
            // answered): recorded with what the stream's properties say.
            self.record = Some(Box::default());
        }
        if self.watch {
            match self.watch_upstream(props) {
                Ok(Some(event)) => {
                    fx.counters.push(PLAINTEXT_UPSTREAM_METRIC);
                    self.raise(&mut fx, event);
                }
                Ok(None) => {}
                Err(fault) => self.fail(fault, &mut fx),
            }
        }
        if before != Phase::Created {
            if let Err(fault) = self.count_at_log(props, shared, &mut fx) {
                self.fail(fault, &mut fx);
            }
        }
        if let Some(mut request) = self.record.take() {
            if let Some(fault) = self.complete_record(&mut request, props) {
                self.fail(fault, &mut fx);
            }
            fx.record = Some(Box::new(AccessRecord::build(
                &request,
                &self.actions,
                self.guard.scrubber(),
            )));
        }
        fx
    }

    /// The host could not apply an effect (a header edit, the body
    /// replacement, the local reply): the fail-closed answer to that.
    pub fn host_failed(&mut self, fault: HostFault) -> Effects {
        let mut fx = Effects::default();
        self.fail(fault, &mut fx);
        fx
    }

    // ---- request --------------------------------------------------------

    fn request_headers(
        &mut self,
        headers: &mut impl HeaderView,
        props: &mut impl PropertySource,
        shared: &mut impl SharedStore,
        end_of_stream: bool,
        fx: &mut Effects,
    ) -> Result<(), HostFault> {
        let guard = Rc::clone(&self.guard);
        let policy = guard.policy();
        let reads = guard.match_reads();
        // The path and the hold marker are read for every request.
        headers.expect_several();
        if headers.get(HOLD_HEADER)?.is_some() {
            // Only dpp_guard marks a message for the hold filters: a mark
            // from the client would make them buffer any request.
            fx.remove(HOLD_HEADER);
        }
        self.strip_untrusted_header(headers, props, fx)?;
        let path = headers.get(":path")?.unwrap_or_default();
        let host = read_if(reads.host, headers, ":authority")?;
        let mut method = read_if(reads.method, headers, ":method")?;
        let route_name = match reads.route_name {
            true => self
                .props
                .string(props, Property::RouteName)?
                .map(str::to_owned),
            false => None,
        };
        let facts = RequestFacts {
            host: host.as_deref().unwrap_or_default(),
            path: &path,
            method: method.as_deref().unwrap_or_default(),
            route_name: route_name.as_deref(),
        };
        let (route, refusal) = match policy.decide_request(&facts) {
            RequestDecision::Unprotected { edits } => {
                apply_request_edits(fx, edits);
                self.watch = guard.sample_unprotected_watch();
                if policy.logging.access_records.covers(false) {
                    let method = method_or_read(method, headers)?;
                    self.request_id = headers.get("x-request-id")?;
                    self.remember(headers, path.clone(), method)?;
                }
                if guard.canaries().is_some() {
                    if self.request_id.is_none() {
                        self.request_id = headers.get("x-request-id")?;
                    }
                    self.canaries_in_target(fx, props, &path)?;
                }
                return Ok(());
            }
            RequestDecision::Refuse {
                route,
                reply,
                event,
            } => (route, Some((reply, event))),
            RequestDecision::Proceed { route, edits } => {
                apply_request_edits(fx, edits);
                (Some(route), None)
            }
        };
        self.route = route.map(|r| r.index);
        // Recorded like a protected request: it is covered by a route, or
        // it was refused (route or not). Watched unless refused here:
        // then nothing goes upstream.
        self.watch = refusal.is_none();
        method = Some(method_or_read(method, headers)?);
        self.method = method.clone().unwrap_or_default();
        self.request_id = headers.get("x-request-id")?;
        if policy.logging.access_records.covers(true) {
            self.remember(headers, path.clone(), method.unwrap_or_default())?;
        }
        if let (Some(record), Some(route)) = (&mut self.record, route) {
            record.policy_route = Some(route.name.clone());
        }
        if self.canaries_in_target(fx, props, &path)? {
            return Ok(());
        }
        if let Some((reply, event)) = refusal {
            // The decision may not have had the method (no route matches
            // on it): the event names it.
            let event = event.method(&self.method);
            if self.refuse(fx, reply, event) {
                return Ok(());
            }
            // Report mode: the request goes on as if the control were off.
            self.watch = true;
        }
        let Some(route) = route else {
            return Ok(());
        };
        if policy.downstream_tls_required() {
            let tls = self.props.string(props, Property::DownstreamTlsVersion)?;
            if let Some((reply, event)) = policy.downstream_refusal(route, tls, &self.method) {
                if self.refuse(fx, reply, event) {
                    return Ok(());
                }
            }
        }
        // Limits count by principal when the policy names where principals
        // come from: resolve it for them too.
        let counts_by_principal = !route.limits.is_empty() && policy.access.principals.is_some();
        if (route.access.is_some() || reveals_fields(route) || counts_by_principal)
            && self.check_access(route, headers, props, shared, fx)?
        {
            return Ok(());
        }
        if !route.limits.is_empty() && self.limit_requests(fx, props, shared, route)? {
            return Ok(());
        }
        if route.fields(Direction::Response).is_some() {
            // A compressed response could not be inspected (and would be
            // refused): ask the upstream for identity encoding.
            fx.remove("accept-encoding");
        }
        if route.fields(Direction::Request).is_some() && !end_of_stream {
            let plan = body::plan(
                route,
                headers.get("content-type")?.as_deref(),
                headers.get("content-encoding")?.as_deref(),
                headers.get("content-length")?.as_deref(),
            );
            let step = self.request_body.on_headers(plan);
            self.body_headers_step(fx, route, Direction::Request, step);
        }
        Ok(())
    }

    /// Request facts of the access record, taken while the headers are at
    /// hand (later filters may rewrite them).
    fn remember(
        &mut self,
        headers: &mut impl HeaderView,
        path: String,
        method: String,
    ) -> Result<(), HostFault> {
        let logging = &self.guard.policy().logging;
        let mut logged = Vec::with_capacity(logging.request_headers.len());
        for name in &logging.request_headers {
            if let Some(value) = headers.get(name)? {
                logged.push((name.clone(), value));
            }
        }
        let principal = match &logging.principal_header {
            Some(h) => headers.get(h)?,
            None => None,
        };
        self.record = Some(Box::new(RequestLogFacts {
            path,
            method,
            request_id: self.request_id.clone(),
            headers: logged,
            principal,
            ..RequestLogFacts::default()
        }));
        Ok(())
    }

    // ---- response -------------------------------------------------------

    fn response_headers(
        &mut self,
        headers: &mut impl HeaderView,
        props: &mut impl PropertySource,
        shared: &mut impl SharedStore,
        end_of_stream: bool,
        fx: &mut Effects,
    ) -> Result<(), HostFault> {
        if headers.get(HOLD_HEADER)?.is_some() {
            // From the upstream: only dpp_guard marks what the hold
            // filters keep back.
            fx.remove(HOLD_HEADER);
        }
        let guard = Rc::clone(&self.guard);
        let Some(route) = self.route.and_then(|i| guard.policy().routes.get(i)) else {
            return Ok(());
        };
        if route.access.as_ref().is_some_and(|a| a.lockout) {
            // The service refused this caller: an authentication failure
            // for the lockout count, like our own 401/403.
            if let Some("401" | "403") = headers.get(":status")?.as_deref() {
                self.count_failure(shared, props, fx);
            }
        }
        for (name, value) in route.response_header_edits().set {
            fx.set(name, value);
        }
        if route.fields(Direction::Response).is_some() && !end_of_stream {
            headers.expect_several();
            let plan = body::plan(
                route,
                headers.get("content-type")?.as_deref(),
                headers.get("content-encoding")?.as_deref(),
                headers.get("content-length")?.as_deref(),
            );
            let step = self.response_body.on_headers(plan);
            self.body_headers_step(fx, route, Direction::Response, step);
        }
        Ok(())
    }

    // ---- bodies ---------------------------------------------------------

    fn body_headers_step(&mut self, fx: &mut Effects, route: &Route, dir: Direction, step: Step) {
        match step {
            Step::Pass => {}
            Step::Hold => {
                // The rewritten body has another length; Envoy re-frames
                // it. Headers continue (Envoy delivers no body to a filter
                // that paused them); the hold filters keep marked headers
                // back until the body is through.
                fx.remove("content-length");
                fx.set(HOLD_HEADER, "1");
            }
            Step::Refuse(f) => self.refuse_body(fx, route, dir, f),
        }
    }

    fn on_body(
        &mut self,
        dir: Direction,
        body_size: usize,
        end_of_stream: bool,
        body: &mut impl BodyView,
    ) -> Effects {
        if self.refused {
            return after_refusal(dir);
        }
        let guard = Rc::clone(&self.guard);
        let Some(route) = self.route.and_then(|i| guard.policy().routes.get(i)) else {
            return Effects::proceed();
        };
        let mut fx = Effects::default();
        match self.body_guard(dir).on_body(route, body_size) {
            Step::Pass => {}
            Step::Refuse(f) => self.refuse_body(&mut fx, route, dir, f),
            Step::Hold if !end_of_stream => fx.flow = Flow::Pause,
            Step::Hold => self.finish_body(&mut fx, route, dir, body_size, body),
        }
        fx
    }

    fn on_trailers(&mut self, dir: Direction, body: &mut impl BodyView) -> Effects {
        if self.refused {
            return after_refusal(dir);
        }
        let guard = Rc::clone(&self.guard);
        let route = self.route.and_then(|i| guard.policy().routes.get(i));
        let mut fx = Effects::default();
        if let (Some(size), Some(route)) = (self.body_guard(dir).pending_at_trailers(), route) {
            self.finish_body(&mut fx, route, dir, size, body);
        }
        fx
    }

    /// Rewrites the complete buffered body of `dir`, or refuses it.
    fn finish_body(
        &mut self,
        fx: &mut Effects,
        route: &Route,
        dir: Direction,
        body_size: usize,
        body: &mut impl BodyView,
    ) {
        self.body_guard(dir).finish();
        if body_size == 0 {
            return;
        }
        let bytes = match body.read(body_size) {
            Ok(b) if b.len() == body_size => b,
            Ok(_) => return self.fail(HostFault::short_read("proxy_get_buffer_bytes"), fx),
            Err(fault) => return self.fail(fault, fx),
        };
        // The keyring is loaded whenever a route has rules (the policy is
        // refused otherwise); its absence here is still refused.
        let (Some(rules), Some(keyring)) = (route.fields(dir), self.guard.keyring()) else {
            return self.refuse_body(fx, route, dir, BodyFailure::Seal);
        };
        let reveal: Vec<bool> = {
            let admits = self.reveals();
            rules
                .rules
                .iter()
                .map(|r| r.reveal.as_ref().is_none_or(&admits))
                .collect()
        };
        let mut hits = Vec::new();
        let canaries = self.guard.canaries();
        let result = protect::rewrite_for(
            rules,
            keyring,
            &bytes,
            |rule| reveal.get(rule).copied().unwrap_or(false),
            &mut |raw| {
                if let Some(i) = canaries.and_then(|c| c.in_json_value(raw)) {
                    monitor::push_once(&mut hits, i);
                }
            },
        );
        if self.canaries_found(fx, dir, &hits) {
            return;
        }
        match result {
            Ok((new, fields)) => {
                let count = match rules.action {
                    FieldAction::Encrypt => &mut self.actions.fields_encrypted,
                    FieldAction::Decrypt => &mut self.actions.fields_decrypted,
                };
                *count = count.saturating_add(fields.processed);
                let a = &mut self.actions;
                a.fields_kept = a.fields_kept.saturating_add(fields.kept);
                a.fields_redacted = a.fields_redacted.saturating_add(fields.redacted);
                if let Some(new) = new {
                    fx.body = Some(BodyReplacement {
                        len: body_size,
                        bytes: new,
                    });
                }
            }
            Err(f) => self.refuse_body(fx, route, dir, f),
        }
    }

    fn body_guard(&mut self, dir: Direction) -> &mut BodyGuard {
        match dir {
            Direction::Request => &mut self.request_body,
            Direction::Response => &mut self.response_body,
        }
    }

    // ---- log ------------------------------------------------------------

    /// Defence in depth: an exchange that went over a plaintext upstream
    /// connection no exemption covers means the upstream guard is missing
    /// or bypassed. Reads as little as the answer needs: one property on a
    /// TLS upstream. When a record is being built, its cluster and response
    /// details are read anyway and settle most plaintext exchanges (an
    /// exempt cluster such as a pod-local hop, a reply that never went
    /// upstream), so the connection is asked about only for an alarm;
    /// without a record the connection is asked first, as it settles the
    /// exchanges that never reached an upstream in one read.
    fn watch_upstream(
        &mut self,
        props: &mut impl PropertySource,
    ) -> Result<Option<SecurityEvent>, HostFault> {
        if self
            .props
            .string(props, Property::UpstreamTlsVersion)?
            .is_some()
        {
            return Ok(None);
        }
        let facts_are_read_anyway = self.record.is_some();
        if !facts_are_read_anyway && !self.upstream_connected(props)? {
            // No upstream connection: nothing went upstream in clear.
            return Ok(None);
        }
        let details = self
            .props
            .string(props, Property::ResponseCodeDetails)?
            .map(str::to_owned);
        let cluster = self
            .props
            .string(props, Property::ClusterName)?
            .map(ClusterName::new);
        let alarm = self.guard.policy().plaintext_upstream_seen(
            cluster.as_ref(),
            true,
            None,
            details.as_deref(),
            "log",
        );
        match alarm {
            // Read once per stream: the cache answers a second ask.
            Some(event) if self.upstream_connected(props)? => Ok(Some(event)),
            _ => Ok(None),
        }
    }

    /// Whether the stream had an upstream connection at all.
    fn upstream_connected(&mut self, props: &mut impl PropertySource) -> Result<bool, HostFault> {
        Ok(self
            .props
            .raw(props, Property::UpstreamLocalAddress)?
            .is_some_and(|a| !a.is_empty()))
    }

    /// Response-side facts of the access record, complete only at log
    /// time. A fact the host cannot deliver is left out; the first such
    /// fault is returned (reported once, the record still written).
    fn complete_record(
        &mut self,
        facts: &mut RequestLogFacts,
        props: &mut impl PropertySource,
    ) -> Option<HostFault> {
        use Property as P;
        let mut first = None;
        let mut ok = |r: Result<Option<String>, HostFault>| match r {
            Ok(v) => v,
            Err(f) => {
                first.get_or_insert(f);
                None
            }
        };
        let c = &mut self.props;
        let text = |c: &mut PropertyCache, props: &mut _, p| {
            c.string(props, p).map(|v| v.map(str::to_owned))
        };
        facts.time_unix_nanos = props.unix_time_nanos();
        facts.code_details = ok(text(c, props, P::ResponseCodeDetails));
        facts.route_name = ok(text(c, props, P::RouteName));
        facts.upstream_cluster = ok(text(c, props, P::ClusterName));
        let downstream = ok(text(c, props, P::DownstreamTlsVersion));
        let upstream = ok(text(c, props, P::UpstreamTlsVersion));
        facts.client_address = ok(text(c, props, P::SourceAddress));
        // No TLS on the client's connection means no client certificate:
        // the flag is not asked for (a property read costs Envoy about as
        // much as a whole unprotected request's callbacks; docs/performance.md).
        let mtls = match downstream {
            Some(_) => ok(c
                .flag(props, P::DownstreamMtls)
                .map(|m| m.then(String::new)))
            .is_some(),
            None => false,
        };
        facts.tls = TlsFacts {
            downstream,
            downstream_mtls: mtls,
            upstream,
        };
        if facts.principal.is_none() && mtls {
            facts.principal = ok(text(c, props, P::PeerSubject));
        }
        let mut number = |p| match c.u64(props, p) {
            Ok(v) => v,
            Err(f) => {
                first.get_or_insert(f);
                None
            }
        };
        facts.status = number(P::ResponseCode);
        facts.duration_nanos = number(P::RequestDuration);
        facts.request_bytes = number(P::RequestTotalSize);
        facts.response_bytes = number(P::ResponseTotalSize);
        first
    }

    // ---- refusals -------------------------------------------------------

    /// Fails closed on a protected body: a JSON error reply and an event.
    /// In report mode the body passes as it came (nothing more of it is
    /// held or rewritten).
    fn refuse_body(&mut self, fx: &mut Effects, route: &Route, dir: Direction, f: BodyFailure) {
        let (reply, event) = f.reply(dir, &route.name, &self.method);
        self.body_guard(dir).finish();
        self.refuse(fx, reply, event);
    }

    /// The mode of the control deciding now: the route's, or the policy's
    /// for a request no route covers.
    fn mode(&self) -> Mode {
        self.route()
            .map_or(self.guard.policy().mode, |route| route.mode)
    }

    /// Every control's refusal goes through here. Enforce mode: answers
    /// with the filter's own reply instead of forwarding, and returns true
    /// (the stream is answered; the caller stops). Report mode: raises the
    /// same event flagged `report_only` (counted by mode) and returns
    /// false; nothing else changes, the message passes as without the
    /// control. The event joins the access record by request id.
    ///
    /// Host faults do not come here ([`Exchange::fail`]): a check that
    /// could not run is refused in both modes (fail closed).
    fn refuse(&mut self, fx: &mut Effects, reply: LocalReply, event: SecurityEvent) -> bool {
        if self.mode().is_report() {
            self.actions.reported(reply.code);
            self.raise(fx, event.report_only());
            return false;
        }
        self.enforce_refusal(fx, reply, event);
        true
    }

    /// Answers with the filter's own reply, in every mode.
    fn enforce_refusal(&mut self, fx: &mut Effects, reply: LocalReply, event: SecurityEvent) {
        self.refused = true;
        self.actions.refused(reply.code);
        self.raise(fx, event);
        fx.header_edits.clear();
        fx.body = None;
        fx.reply = Some(reply);
        fx.flow = Flow::Pause;
    }

    fn raise(&mut self, fx: &mut Effects, event: SecurityEvent) {
        let event = match &self.request_id {
            Some(id) if event.request_id.is_none() => {
                event.scrubbed_request_id(id, self.guard.scrubber())
            }
            _ => event,
        };
        self.actions.raised(event.event);
        fx.counters.extend(event.counters());
        fx.events.push(event);
    }

    /// A host call failed. While the stream can still be answered, it is
    /// refused; if the refusal itself could not be sent, it is reset; at
    /// log time there is nothing left to stop, so the fault is reported.
    fn fail(&mut self, fault: HostFault, fx: &mut Effects) {
        let event = SecurityEvent::new(EventKind::HostCallFailed)
            .detail(format!("{}: {fault}", phase_name(self.phase)));
        let event = match self.route() {
            Some(route) => event.route(&route.name),
            None => event,
        };
        let event = match self.method.is_empty() {
            true => event,
            false => event.method(&self.method),
        };
        let Some(dir) = self.phase.direction() else {
            self.raise(fx, event);
            return;
        };
        if self.refused {
            // The refusal itself failed: nothing of this stream may pass.
            self.raise(fx, event);
            fx.header_edits.clear();
            fx.body = None;
            fx.reply = None;
            fx.reset = true;
            fx.flow = Flow::Pause;
            return;
        }
        self.enforce_refusal(fx, host_fault_reply(dir), event);
    }

    // ---- monitoring -----------------------------------------------------

    /// Who made the request, as a pseudonym: the key of the per-client
    /// counters and the `subject` of monitoring events.
    ///
    /// The access checks' subject comes first (the principal, or the
    /// client address as `client_address` defines it); without one, the
    /// socket peer (`source.address`, port dropped, pseudonymised with the
    /// log key).
    fn who(&mut self, props: &mut impl PropertySource) -> Result<String, HostFault> {
        if let Some(who) = &self.subject {
            return Ok(who.clone());
        }
        if let Some(subject) = self.caller.subject.as_ref().filter(|s| s.keyed) {
            // The access checks resolved the principal (or the client
            // address they allowlist by): count by the same subject.
            self.subject = Some(subject.pseudonym.clone());
            return Ok(subject.pseudonym.clone());
        }
        let who = match self.props.string(props, Property::SourceAddress)? {
            Some(addr) => self.guard.scrubber().client_address(addr),
            None => "unknown".to_string(),
        };
        self.subject = Some(who.clone());
        Ok(who)
    }

    /// Canaries in the request target. True when one blocked the request.
    fn canaries_in_target(
        &mut self,
        fx: &mut Effects,
        props: &mut impl PropertySource,
        target: &str,
    ) -> Result<bool, HostFault> {
        let guard = Rc::clone(&self.guard);
        let Some(canaries) = guard.canaries() else {
            return Ok(false);
        };
        let mut hits = Vec::new();
        canaries.in_target(target, &mut hits);
        if hits.is_empty() {
            return Ok(false);
        }
        if let Some(record) = &mut self.record {
            // The access record keeps the request's path: not the canary's.
            record.path = canaries.redact_target(target);
        }
        self.who(props)?;
        Ok(self.canaries_found(fx, Direction::Request, &hits))
    }

    /// Raises `canary_accessed` once per canary per stream; a blocking
    /// canary refuses the message (403 request, 502 response). True when
    /// the stream was answered. The value itself is never logged: the
    /// event names the canary's label.
    fn canaries_found(&mut self, fx: &mut Effects, dir: Direction, hits: &[usize]) -> bool {
        let guard = Rc::clone(&self.guard);
        let Some(canaries) = guard.canaries() else {
            return false;
        };
        let mut block = None;
        for &i in hits {
            let Some(canary) = canaries.get(i) else {
                continue;
            };
            if self.canaries_seen.contains(&i) {
                continue;
            }
            self.canaries_seen.push(i);
            let mut event = SecurityEvent::new(EventKind::CanaryAccessed).detail(format!(
                "{}: {}",
                dir.name(),
                canary.label
            ));
            if let Some(route) = self.route() {
                event = event.route(&route.name);
            }
            if !self.method.is_empty() {
                event = event.method(&self.method);
            }
            if let Some(who) = &self.subject {
                event = event.subject(who);
            }
            if canary.block && block.is_none() {
                block = Some(event);
            } else {
                self.raise(fx, event);
            }
        }
        let Some(event) = block else {
            return false;
        };
        let reply = match dir {
            Direction::Request => LocalReply::json(
                403,
                "canary_record",
                "this record may not be accessed; the request was not forwarded",
            ),
            Direction::Response => LocalReply::json(
                502,
                "canary_record",
                "the response carried a record that may not be accessed; it was not forwarded",
            ),
        };
        self.refuse(fx, reply, event)
    }

    /// The route's limits at request headers: counts the request, raises
    /// `rate_anomaly` on the one request that crosses `limits.requests`,
    /// and throttles (429, `Retry-After`) while any throttling limit of
    /// this client's window is exceeded. True when throttled.
    fn limit_requests(
        &mut self,
        fx: &mut Effects,
        props: &mut impl PropertySource,
        shared: &mut impl SharedStore,
        route: &Route,
    ) -> Result<bool, HostFault> {
        let who = self.who(props)?;
        let now = props.unix_time_nanos();
        let mut over: Option<(u64, Option<SecurityEvent>)> = None;
        if let Some(limit) = route.limits.requests {
            let key = monitor::counter_key(Counter::Requests, Some(&route.name), &who);
            let tally = shared::add(
                shared,
                &key,
                now,
                limit.window_nanos(),
                1,
                limit.max.saturating_add(1),
            )?;
            let event = tally.crossed.then(|| {
                self.alarm(EventKind::RateAnomaly, route, &who)
                    .detail(format!(
                        "requests: more than {} in {}s",
                        limit.max, limit.window_seconds
                    ))
            });
            match (tally.window.count > limit.max && limit.throttle, event) {
                (true, event) => over = Some((tally.window.end(limit.window_nanos()), event)),
                (false, Some(event)) => self.raise(fx, event),
                (false, None) => {}
            }
        }
        for (limit, counter) in [
            (route.limits.fields_revealed, Counter::FieldsRevealed),
            (route.limits.response_bytes, Counter::ResponseBytes),
        ] {
            let Some(limit) = limit.filter(|l| l.throttle) else {
                continue;
            };
            let key = monitor::counter_key(counter, Some(&route.name), &who);
            let window = shared::peek(shared, &key, now, limit.window_nanos())?;
            if window.count > limit.max {
                let end = window.end(limit.window_nanos());
                over = Some(match over {
                    Some((e, ev)) => (e.max(end), ev),
                    None => (end, None),
                });
            }
        }
        let Some((end, event)) = over else {
            return Ok(false);
        };
        let reply = LocalReply::throttled(monitor::retry_after_seconds(now, end));
        Ok(self.throttle(fx, reply, event))
    }

    /// Throttles: with the crossing event when this request raised one,
    /// else silently (the alarm is once per window; the counter
    /// `dpp_guard.throttled` counts every throttled request).
    fn throttle(
        &mut self,
        fx: &mut Effects,
        reply: LocalReply,
        event: Option<SecurityEvent>,
    ) -> bool {
        if let Some(event) = event {
            let enforced = self.refuse(fx, reply, event);
            if enforced {
                fx.counters.push(THROTTLED_METRIC);
            }
            return enforced;
        }
        if self.mode().is_report() {
            self.actions.reported(reply.code);
            return false;
        }
        fx.counters.push(THROTTLED_METRIC);
        self.refused = true;
        self.actions.refused(reply.code);
        fx.header_edits.clear();
        fx.body = None;
        fx.reply = Some(reply);
        fx.flow = Flow::Pause;
        true
    }

    fn alarm(&self, kind: EventKind, route: &Route, who: &str) -> SecurityEvent {
        let event = SecurityEvent::new(kind).route(&route.name).subject(who);
        match self.method.is_empty() {
            true => event,
            false => event.method(&self.method),
        }
    }

    /// At log: fields revealed and response bytes of this stream against
    /// the route's volume limits, and a 401/403 answer (the filter's or
    /// the service's) against `monitoring.unauthorized_burst`.
    fn count_at_log(
        &mut self,
        props: &mut impl PropertySource,
        shared: &mut impl SharedStore,
        fx: &mut Effects,
    ) -> Result<(), HostFault> {
        let guard = Rc::clone(&self.guard);
        let policy = guard.policy();
        if let Some(burst) = policy.monitoring.unauthorized_burst {
            let status = self.props.u64(props, Property::ResponseCode)?;
            if matches!(status, Some(401 | 403)) {
                let who = self.who(props)?;
                let key = monitor::counter_key(Counter::Unauthorized, None, &who);
                let now = props.unix_time_nanos();
                let length = burst.window_seconds.saturating_mul(1_000_000_000);
                let tally = shared::add(shared, &key, now, length, 1, burst.count)?;
                if tally.crossed {
                    let mut event = SecurityEvent::new(EventKind::UnauthorizedBurst)
                        .subject(&who)
                        .detail(format!(
                            "{} answers 401/403 in {}s",
                            burst.count, burst.window_seconds
                        ));
                    if let Some(route) = self.route() {
                        event = event.route(&route.name);
                    }
                    self.raise(fx, event);
                }
            }
        }
        let Some(route) = self.route.and_then(|i| policy.routes.get(i)) else {
            return Ok(());
        };
        if self.refused {
            // Our own reply revealed nothing.
            return Ok(());
        }
        if let Some(limit) = route.limits.fields_revealed {
            let revealed = u64::from(self.actions.fields_decrypted);
            self.count_volume(
                props,
                shared,
                fx,
                route,
                limit,
                Counter::FieldsRevealed,
                revealed,
            )?;
        }
        if let Some(limit) = route.limits.response_bytes {
            let bytes = self
                .props
                .u64(props, Property::ResponseTotalSize)?
                .unwrap_or(0);
            self.count_volume(
                props,
                shared,
                fx,
                route,
                limit,
                Counter::ResponseBytes,
                bytes,
            )?;
        }
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    fn count_volume(
        &mut self,
        props: &mut impl PropertySource,
        shared: &mut impl SharedStore,
        fx: &mut Effects,
        route: &Route,
        limit: Limit,
        counter: Counter,
        amount: u64,
    ) -> Result<(), HostFault> {
        if amount == 0 {
            return Ok(());
        }
        let who = self.who(props)?;
        let key = monitor::counter_key(counter, Some(&route.name), &who);
        let now = props.unix_time_nanos();
        let tally = shared::add(
            shared,
            &key,
            now,
            limit.window_nanos(),
            amount,
            limit.max.saturating_add(1),
        )?;
        if tally.crossed {
            let what = match counter {
                Counter::FieldsRevealed => "fields_revealed",
                _ => "response_bytes",
            };
            let event = self
                .alarm(EventKind::VolumeAnomaly, route, &who)
                .detail(format!(
                    "{what}: more than {} in {}s",
                    limit.max, limit.window_seconds
                ));
            // The answer is already out: throttling applies to the next
            // requests of the window. In report mode those would pass.
            let event = match limit.throttle && route.mode.is_report() {
                true => event.report_only(),
                false => event,
            };
            self.raise(fx, event);
        }
        Ok(())
    }
}

/// After a refusal the only response is our own local reply, which passes
/// through the response callbacks too: let it through. Request bytes stay
/// held.
fn after_refusal(dir: Direction) -> Effects {
    match dir {
        Direction::Request => Effects::pause(),
        Direction::Response => Effects::proceed(),
    }
}

/// A decrypt rule of the route has `reveal_to`: the caller's roles matter.
fn reveals_fields(route: &Route) -> bool {
    [Direction::Request, Direction::Response]
        .into_iter()
        .filter_map(|d| route.fields(d))
        .any(|f| f.rules.iter().any(|r| r.reveal.is_some()))
}

/// Request header edits the route decision made (a normalised `:path`).
fn apply_request_edits(fx: &mut Effects, edits: RequestHeaderEdits) {
    for (name, value) in edits.set {
        fx.set(name, value);
    }
}

fn read_if(
    wanted: bool,
    headers: &mut impl HeaderView,
    name: &str,
) -> Result<Option<String>, HostFault> {
    match wanted {
        true => Ok(Some(headers.get(name)?.unwrap_or_default())),
        false => Ok(None),
    }
}

fn method_or_read(
    method: Option<String>,
    headers: &mut impl HeaderView,
) -> Result<String, HostFault> {
    match method {
        Some(m) => Ok(m),
        None => Ok(headers.get(":method")?.unwrap_or_default()),
    }
}

fn phase_name(phase: Phase) -> &'static str {
    match phase {
        Phase::Created => "stream start",
        Phase::RequestHeaders => "request headers",
        Phase::RequestBody => "request body",
        Phase::RequestTrailers => "request trailers",
        Phase::ResponseHeaders => "response headers",
        Phase::ResponseBody => "response body",
        Phase::ResponseTrailers => "response trailers",
        Phase::Log => "log",
    }
}

/// The reply when the proxy could not hand over what a decision needs.
pub fn host_fault_reply(dir: Direction) -> LocalReply {
    match dir {
        Direction::Request => LocalReply::json(
            500,
            "check_unavailable",
            "the data protection check could not run; the request was not forwarded",
        ),
        Direction::Response => LocalReply::json(
            502,
            "check_unavailable",
            "the data protection check could not run; the response was not forwarded",
        ),
    }
}
