//! One sample exchange under a policy, for the playground: the steps the
//! filter takes for one body, each one a call into `dpp_core`, in the
//! order `plugin/src/stream.rs` makes them (route decision, downstream TLS
//! check, body plan, size limit, rewrite, refusal reply and event, access
//! record). Nothing is decided here; this only sequences core's decisions
//! for a request that is given as data instead of arriving from Envoy.

use std::collections::BTreeMap;

use dpp_core::access::chain::LogChain;
use dpp_core::crypto::Keyring;
use dpp_core::policy::{Direction, Route};
use dpp_core::protect::{self, BodyFailure, BodyHeaders, BodyPlan};
use dpp_core::{
    AccessRecord, Actions, LocalReply, LogKey, Policy, RequestDecision, RequestFacts,
    RequestLogFacts, SecurityEvent, TlsFacts,
};
use serde::{Deserialize, Serialize};

use crate::api::{action_name, parse_action, parse_direction, Outcome, Problem};

/// A request (and, for `direction: "response"`, its response) as data.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Sample {
    #[serde(default = "get")]
    pub method: String,
    /// `:path`, query string included.
    pub path: String,
    /// `:authority`.
    #[serde(default)]
    pub host: String,
    /// Envoy's route name (`xds.route_name`), for `match.route_name`.
    #[serde(default)]
    pub envoy_route: Option<String>,
    /// The policy route whose rules run, like `dpp-guard encrypt --route`.
    /// Default: the route the request matches, as in Envoy.
    #[serde(default)]
    pub route: Option<String>,
    /// Which body the sample carries: `request` or `response`.
    #[serde(default = "request")]
    pub direction: String,
    /// Run the route's fields with this action instead of the policy's
    /// (`decrypt` what an encrypt rule sealed).
    #[serde(default)]
    pub action: Option<String>,
    /// Request headers, names in any case.
    #[serde(default)]
    pub request_headers: BTreeMap<String, String>,
    #[serde(default)]
    pub response_headers: BTreeMap<String, String>,
    /// The body of `direction`.
    #[serde(default)]
    pub body: String,
    /// Downstream TLS version as Envoy reports it (`TLSv1.3`); `null` for
    /// plaintext.
    #[serde(default = "tls13")]
    pub tls: Option<String>,
    /// The upstream's status (responses that were not refused).
    #[serde(default)]
    pub status: Option<u64>,
    /// `source.address`, `ip:port`.
    #[serde(default)]
    pub client: Option<String>,
    #[serde(default)]
    pub time_unix_ms: u64,
    /// The log chain's worker id.
    #[serde(default = "worker")]
    pub worker: String,
}

fn get() -> String {
    "GET".into()
}
fn request() -> String {
    "request".into()
}
fn tls13() -> Option<String> {
    Some("TLSv1.3".into())
}
fn worker() -> String {
    "playground".into()
}

/// What the filter would do with the sample.
#[derive(Debug, Default, Serialize)]
pub struct Exchange {
    /// The route the request matches in Envoy (host, path, method), if any.
    pub matched_route: Option<String>,
    /// The route whose rules ran.
    pub route: Option<String>,
    /// `unprotected` (no route: passes untouched), `forwarded` or `refused`.
    pub outcome: &'static str,
    /// Why something did not happen the way the sample asked.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
    pub direction: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub action: Option<&'static str>,
    pub fields: u32,
    /// The body was rewritten (false: forwarded byte for byte).
    pub changed: bool,
    /// The body as forwarded; absent when refused.
    pub body: Option<String>,
    /// The filter's own answer when it refused.
    pub reply: Option<Reply>,
    /// Request headers the filter replaces (`:path` in its normal form).
    pub request_headers_set: Vec<(&'static str, String)>,
    /// Response headers the route sets.
    pub response_headers: Vec<(&'static str, &'static str)>,
    /// Security event lines (`dpp_event {...}`), as logged.
    pub events: Vec<String>,
    /// The access record line, as published to Envoy's access log; absent
    /// when `logging.access_records` leaves this request out.
    pub record: Option<String>,
    /// True when the record carries the MAC chain (a log key was given).
    pub sealed: bool,
}

#[derive(Debug, Serialize)]
pub struct Reply {
    pub status: u32,
    pub code: &'static str,
    pub body: String,
}

impl From<LocalReply> for Reply {
    fn from(r: LocalReply) -> Reply {
        Reply {
            status: r.status,
            code: r.code,
            body: r.body,
        }
    }
}

fn header<'a>(headers: &'a BTreeMap<String, String>, name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

/// Runs the sample. `log_key`: the log key's text (pseudonyms, MAC chain).
pub fn run(
    policy: &Policy,
    sample: &str,
    keyring: Option<&Keyring>,
    log_key: Option<&str>,
) -> Outcome<Exchange> {
    let sample: Sample = match serde_json::from_str(sample) {
        Ok(s) => s,
        Err(e) => return Outcome::err(Problem::new("bad_sample", e.to_string())),
    };
    let Some(dir) = parse_direction(&sample.direction) else {
        return Outcome::err(Problem::new(
            "bad_sample",
            format!(
                "direction {:?} is not `request` or `response`",
                sample.direction
            ),
        ));
    };
    let action = match sample.action.as_deref().map(|a| (a, parse_action(a))) {
        None => None,
        Some((_, Some(a))) => Some(a),
        Some((a, None)) => {
            return Outcome::err(Problem::new(
                "bad_sample",
                format!("action {a:?} is not `encrypt` or `decrypt`"),
            ))
        }
    };
    let log_key = match log_key.filter(|k| !k.trim().is_empty()) {
        None => None,
        Some(text) => match LogKey::parse(text) {
            Ok(k) => Some(k),
            Err(e) => return Outcome::err(Problem::new("bad_log_key", format!("log key {e}"))),
        },
    };
    let chosen = match sample.route.as_deref() {
        None => None,
        Some(name) => match policy.routes.iter().find(|r| r.name == name) {
            Some(r) => Some(r),
            None => {
                return Outcome::err(Problem::new(
                    "no_such_route",
                    format!("no route named {name:?} in the policy"),
                ))
            }
        },
    };

    let mut run = Run {
        policy,
        sample: &sample,
        dir,
        actions: Actions::default(),
        ex: Exchange {
            direction: dir.name(),
            ..Exchange::default()
        },
    };
    run.exchange(chosen, action, keyring);
    run.record(log_key.as_ref());
    Outcome::ok(run.ex)
}

struct Run<'a> {
    policy: &'a Policy,
    sample: &'a Sample,
    dir: Direction,
    actions: Actions,
    ex: Exchange,
}

type ActionOverride = Option<dpp_core::policy::FieldAction>;

impl Run<'_> {
    fn exchange(
        &mut self,
        chosen: Option<&Route>,
        action: ActionOverride,
        keyring: Option<&Keyring>,
    ) {
        let s = self.sample;
        let facts = RequestFacts {
            host: &s.host,
            path: &s.path,
            method: &s.method,
            route_name: s.envoy_route.as_deref(),
        };
        let (matched, refusal, edits) = match self.policy.decide_request(&facts) {
            RequestDecision::Unprotected { edits } => (None, None, edits.set),
            RequestDecision::Proceed { route, edits } => (Some(route), None, edits.set),
            RequestDecision::Refuse {
                route,
                reply,
                event,
            } => (route, Some((reply, event)), Vec::new()),
        };
        self.ex.matched_route = matched.map(|r| r.name.clone());
        self.ex.request_headers_set = edits;
        let route = match chosen {
            // The playground (and the CLI) may run any route's rules; Envoy
            // only runs the matched route's. Say what Envoy would do.
            Some(c) if matched.is_none_or(|m| m.name != c.name) => {
                let envoy = match (matched, &refusal) {
                    (_, Some((reply, _))) => format!(
                        "in Envoy this request is refused ({} {})",
                        reply.status, reply.code
                    ),
                    (None, None) => "in Envoy this request matches no route and passes \
                                     untouched"
                        .to_string(),
                    (Some(m), None) => format!("in Envoy this request matches route {:?}", m.name),
                };
                self.ex.notes.push(format!(
                    "{envoy}; route {:?} ran because it was chosen",
                    c.name
                ));
                c
            }
            _ => {
                if let Some((reply, event)) = refusal {
                    self.refuse(reply, event);
                    return;
                }
                let Some(m) = matched else {
                    self.ex.outcome = "unprotected";
                    self.ex.body = Some(s.body.clone());
                    return;
                };
                let tls = s.tls.as_deref();
                if let Some((reply, event)) = self.policy.downstream_refusal(m, tls, &s.method) {
                    self.refuse(reply, event);
                    return;
                }
                m
            }
        };
        self.ex.route = Some(route.name.clone());
        self.ex.response_headers = route.response_header_edits().set;
        self.body(route, action, keyring);
    }

    /// The body concern of plugin/src/body.rs and stream.rs for one
    /// complete body.
    fn body(&mut self, route: &Route, action: ActionOverride, keyring: Option<&Keyring>) {
        let s = self.sample;
        self.ex.outcome = "forwarded";
        let Some(rules) = route.fields(self.dir) else {
            self.ex.notes.push(format!(
                "route {:?} has no {} rules: the body passes untouched",
                route.name,
                self.dir.name()
            ));
            self.ex.body = Some(s.body.clone());
            return;
        };
        let rules = match action {
            Some(a) => rules.with_action(a),
            None => rules.clone(),
        };
        self.ex.action = Some(action_name(rules.action));
        let headers = match self.dir {
            Direction::Request => &s.request_headers,
            Direction::Response => &s.response_headers,
        };
        let plan = protect::plan(
            &route.body,
            &BodyHeaders {
                content_type: header(headers, "content-type"),
                content_encoding: header(headers, "content-encoding"),
                content_length: header(headers, "content-length"),
            },
        );
        match plan {
            Err(f) => return self.refuse_body(route, f),
            Ok(BodyPlan::Pass) => {
                self.ex.body = Some(s.body.clone());
                return;
            }
            Ok(BodyPlan::Buffer) => {}
        }
        if s.body.len() > route.body.max_bytes {
            return self.refuse_body(route, BodyFailure::TooLarge);
        }
        if s.body.is_empty() {
            self.ex.body = Some(String::new());
            return;
        }
        let Some(keyring) = keyring else {
            // The filter never runs rules without its keyring.
            self.ex.notes.push("no keyring given".into());
            return self.refuse_body(route, BodyFailure::Seal);
        };
        match protect::rewrite_counted(&rules, keyring, s.body.as_bytes()) {
            Ok((new, fields)) => {
                self.ex.fields = fields;
                self.ex.changed = new.is_some();
                match rules.action {
                    dpp_core::policy::FieldAction::Encrypt => {
                        self.actions.fields_encrypted = fields
                    }
                    dpp_core::policy::FieldAction::Decrypt => {
                        self.actions.fields_decrypted = fields
                    }
                }
                self.ex.body = Some(match new {
                    Some(b) => String::from_utf8_lossy(&b).into_owned(),
                    None => s.body.clone(),
                });
            }
            Err(f) => self.refuse_body(route, f),
        }
    }

    fn refuse_body(&mut self, route: &Route, failure: BodyFailure) {
        let (reply, event) = failure.reply(self.dir, &route.name, &self.sample.method);
        self.refuse(reply, event);
    }

    /// As `GuardedStream::refuse`: the event joined to the request id,
    /// both recorded in the actions.
    fn refuse(&mut self, reply: LocalReply, event: SecurityEvent) {
        let event = match header(&self.sample.request_headers, "x-request-id") {
            Some(id) => event.request_id(id),
            None => event,
        };
        self.actions.raised(event.event);
        self.actions.refused(reply.code);
        self.ex.events.push(event.to_log_line());
        self.ex.outcome = "refused";
        self.ex.body = None;
        self.ex.reply = Some(reply.into());
    }

    /// The access record, as `LogSink::access` builds and seals it.
    fn record(&mut self, key: Option<&LogKey>) {
        let s = self.sample;
        let logging = &self.policy.logging;
        let protected = self.ex.matched_route.is_some();
        if !logging.access_records.covers(protected) {
            return;
        }
        let scrubber = logging.scrubber(key, self.policy.selector_leaf_names());
        let headers = logging
            .request_headers
            .iter()
            .filter_map(|name| {
                header(&s.request_headers, name).map(|v| (name.clone(), v.to_string()))
            })
            .collect();
        let status = match &self.ex.reply {
            Some(r) => Some(u64::from(r.status)),
            None => s.status.or(Some(200)),
        };
        let facts = RequestLogFacts {
            time_unix_nanos: s.time_unix_ms.saturating_mul(1_000_000),
            request_id: header(&s.request_headers, "x-request-id").map(str::to_string),
            method: s.method.clone(),
            path: s.path.clone(),
            status,
            code_details: self.ex.reply.as_ref().map(|r| r.code.to_string()),
            route_name: s.envoy_route.clone(),
            policy_route: self.ex.matched_route.clone(),
            tls: TlsFacts {
                downstream: s.tls.clone(),
                ..TlsFacts::default()
            },
            client_address: s.client.clone(),
            principal: logging
                .principal_header
                .as_deref()
                .and_then(|h| header(&s.request_headers, h))
                .map(str::to_string),
            headers,
            ..RequestLogFacts::default()
        };
        let record = AccessRecord::build(&facts, &self.actions, &scrubber);
        let mut chain = LogChain::new(s.worker.clone(), key.map(LogKey::chain_key));
        self.ex.record = Some(chain.seal(record));
        self.ex.sealed = key.is_some();
    }
}
