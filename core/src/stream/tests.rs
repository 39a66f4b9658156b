//! The exchange driven phase by phase with plain values: every refusal path,
//! every body outcome, and what each phase reads.

mod access;

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;

use serde_json::{json, Value};

use super::*;
use crate::crypto::Keyring;
use crate::events::EventKind;
use crate::policy::Policy;
use crate::wire::{HOLD_HEADER, PLAINTEXT_UPSTREAM_METRIC};

const KEYS: &str = "k1=AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8";
const REQUEST_ID: &str = "0f8fad5b-d9cb-469f-a165-70867728950e";

// ---- test views -------------------------------------------------------------

/// A header map with a log of every name read, and an optional fault.
#[derive(Default)]
struct Headers {
    pairs: Vec<(String, String)>,
    reads: Rc<RefCell<Vec<String>>>,
    fault: Option<HostFault>,
}

impl Headers {
    fn new(pairs: &[(&str, &str)]) -> Headers {
        Headers {
            pairs: pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            ..Headers::default()
        }
    }

    fn gone() -> Headers {
        Headers {
            fault: Some(HostFault::status("proxy_get_header_map_value", 2)),
            ..Headers::default()
        }
    }

    fn read(&self) -> Vec<String> {
        self.reads.borrow().clone()
    }
}

impl HeaderView for Headers {
    fn get(&mut self, name: &str) -> Result<Option<String>, HostFault> {
        if let Some(f) = self.fault {
            return Err(f);
        }
        self.reads.borrow_mut().push(name.to_string());
        Ok(self
            .pairs
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone()))
    }
}

/// Properties with a count of host reads per property.
#[derive(Default)]
struct Props {
    values: BTreeMap<&'static [&'static str], Vec<u8>>,
    reads: BTreeMap<&'static [&'static str], u32>,
    fault: Option<(Property, HostFault)>,
    /// Values of attribute paths the policy names (JWT claims), by dotted path.
    paths: BTreeMap<String, Vec<u8>>,
    /// The host clock, when a test moves it.
    now: Option<u64>,
}

impl Props {
    fn with(mut self, p: Property, v: &str) -> Props {
        self.values.insert(p.path(), v.as_bytes().to_vec());
        self
    }

    fn with_u64(mut self, p: Property, v: u64) -> Props {
        self.values.insert(p.path(), v.to_le_bytes().to_vec());
        self
    }

    fn failing(mut self, p: Property) -> Props {
        self.fault = Some((p, HostFault::status("proxy_get_property", 10)));
        self
    }

    fn reads_of(&self, p: Property) -> u32 {
        self.reads.get(p.path()).copied().unwrap_or(0)
    }

    fn total_reads(&self) -> u32 {
        self.reads.values().sum()
    }

    /// A plaintext upstream connection that answered.
    fn plaintext_upstream(self, cluster: &str) -> Props {
        self.with(Property::UpstreamLocalAddress, "127.0.0.1:40000")
            .with(Property::ResponseCodeDetails, "via_upstream")
            .with(Property::ClusterName, cluster)
    }
}

impl PropertySource for Props {
    fn get(&mut self, p: Property) -> Result<Option<Vec<u8>>, HostFault> {
        *self.reads.entry(p.path()).or_default() += 1;
        match self.fault {
            Some((q, f)) if q == p => Err(f),
            _ => Ok(self.values.get(p.path()).cloned()),
        }
    }

    fn unix_time_nanos(&mut self) -> u64 {
        self.now.unwrap_or(1_767_225_600_000_000_000)
    }

    fn get_path(&mut self, path: &[&str]) -> Result<Option<Vec<u8>>, HostFault> {
        Ok(self.paths.get(&path.join(".")).cloned())
    }
}

/// The buffered body as the host would hand it over.
struct Body {
    bytes: Vec<u8>,
    fault: Option<HostFault>,
    short: bool,
}

impl Body {
    fn of(bytes: &[u8]) -> Body {
        Body {
            bytes: bytes.to_vec(),
            fault: None,
            short: false,
        }
    }

    fn unreadable() -> Body {
        Body {
            bytes: Vec::new(),
            fault: Some(HostFault::status("proxy_get_buffer_bytes", 1)),
            short: false,
        }
    }
}

impl BodyView for Body {
    fn read(&mut self, len: usize) -> Result<Vec<u8>, HostFault> {
        if let Some(f) = self.fault {
            return Err(f);
        }
        let n = if self.short { len / 2 } else { len };
        Ok(self.bytes[..n.min(self.bytes.len())].to_vec())
    }
}

fn no_body() -> Body {
    Body::of(b"")
}

// ---- policies ---------------------------------------------------------------

fn guard(policy: Value) -> Rc<Guard> {
    let policy = Policy::from_json(policy.to_string().as_bytes()).expect("valid policy");
    let keyring = policy.keys.as_ref().map(|_| Keyring::parse(KEYS).unwrap());
    let scrubber = policy.logging.scrubber(None, policy.selector_leaf_names());
    Rc::new(Guard::new(policy, keyring, scrubber))
}

fn base() -> Value {
    json!({
        "version": 1,
        "keys": {"env": "DPP_KEYS"},
        "routes": [
            {"name": "legacy-mws", "match": {"path": {"prefix": "/mws/"}}, "kill_switch": true},
            {"name": "orders", "match": {"path": {"prefix": "/orders/"}}, "no_store": true},
            {"name": "seal", "match": {"path": {"prefix": "/seal/"}},
             "encrypt": [{"direction": "request", "selectors": ["$.email"]}],
             "body": {"max_bytes": 64}},
            {"name": "open", "match": {"path": {"prefix": "/open/"}},
             "decrypt": [{"direction": "response", "selectors": ["$.email"]}]},
            {"name": "reply-seal", "match": {"path": {"prefix": "/reply-seal/"}},
             "encrypt": [{"direction": "response", "selectors": ["$.email"]}]},
            {"name": "lenient", "match": {"path": {"prefix": "/lenient/"}},
             "encrypt": [{"direction": "request", "selectors": ["$.email"]}],
             "body": {"non_json": "pass"}}
        ],
        "transport": {"downstream": {"trusted_tls_terminator": true}},
        "logging": {"access_records": "protected"}
    })
}

fn with(mut policy: Value, path: &str, value: Value) -> Value {
    let mut at = &mut policy;
    let parts: Vec<&str> = path.split('.').collect();
    for p in &parts[..parts.len() - 1] {
        at = &mut at[*p];
    }
    at[parts[parts.len() - 1]] = value;
    policy
}

fn request(method: &str, path: &str, extra: &[(&str, &str)]) -> Headers {
    let mut pairs = vec![
        (":method", method),
        (":path", path),
        (":authority", "api.example.com"),
        ("x-request-id", REQUEST_ID),
    ];
    pairs.extend_from_slice(extra);
    Headers::new(&pairs)
}

fn json_post(path: &str) -> Headers {
    request("POST", path, &[("content-type", "application/json")])
}

fn response(extra: &[(&str, &str)]) -> Headers {
    let mut pairs = vec![(":status", "200")];
    pairs.extend_from_slice(extra);
    Headers::new(&pairs)
}

fn event_kinds(fx: &Effects) -> Vec<EventKind> {
    fx.events.iter().map(|e| e.event).collect()
}

fn reply_of(fx: &Effects) -> (u32, &'static str) {
    let r = fx.reply.as_ref().expect("a local reply");
    (r.status, r.code)
}

fn removes(fx: &Effects, name: &str) -> bool {
    fx.header_edits
        .iter()
        .any(|e| matches!(e, HeaderEdit::Remove(n) if *n == name))
}

fn sets(fx: &Effects, name: &str) -> Option<String> {
    fx.header_edits.iter().rev().find_map(|e| match e {
        HeaderEdit::Set(n, v) if *n == name => Some(v.to_string()),
        _ => None,
    })
}

// ---- unprotected traffic ----------------------------------------------------

#[test]
fn unprotected_request_reads_only_the_path_and_the_marker() {
    let g = guard(base());
    let mut x = g.open();
    let mut h = request("GET", "/catalog/items?q=1", &[]);
    let mut p = Props::default();
    let fx = x.on_request_headers(&mut h, &mut p, &mut shared::MemoryStore::default(), true);
    assert_eq!(fx.flow, Flow::Continue);
    assert!(fx.is_quiet(), "{fx:?}");
    assert_eq!(h.read(), [HOLD_HEADER, ":path"]);
    assert_eq!(p.total_reads(), 0, "no route matches on the route name");
    assert!(x.route().is_none());

    let mut rh = response(&[]);
    let fx = x.on_response_headers(&mut rh, &mut p, &mut shared::MemoryStore::default(), false);
    assert!(fx.is_quiet());
    assert_eq!(rh.read(), [HOLD_HEADER]);
    assert!(x.on_response_body(10, true, &mut no_body()).is_quiet());
    // access_records: protected, and the watch sampled this first request
    // (nothing connected upstream here): one property read.
    let fx = x.on_log(&mut p, &mut shared::MemoryStore::default());
    assert!(fx.is_quiet());
    assert!(fx.record.is_none());
    assert_eq!(p.total_reads(), 2, "upstream TLS, then no connection");
}

#[test]
fn match_facts_are_read_only_when_a_route_matches_on_them() {
    let policy = with(
        base(),
        "routes",
        json!([{"name": "r", "match": {"host": "api.example.com", "methods": ["POST"],
                 "route_name": "svc"}}]),
    );
    let g = guard(policy);
    let reads = g.match_reads();
    assert!(reads.host && reads.method && reads.route_name);
    let mut x = g.open();
    let mut h = request("GET", "/x", &[]);
    let mut p = Props::default().with(Property::RouteName, "svc");
    let fx = x.on_request_headers(&mut h, &mut p, &mut shared::MemoryStore::default(), true);
    assert!(fx.is_quiet());
    assert!(x.route().is_none(), "GET is not POST");
    assert_eq!(h.read(), [HOLD_HEADER, ":path", ":authority", ":method"]);
    assert_eq!(p.reads_of(Property::RouteName), 1);
}

#[test]
fn the_hold_marker_is_removed_from_requests_and_responses_and_set_only_by_the_guard() {
    let g = guard(base());
    // Unprotected: a client's marker would make the hold filter buffer.
    let mut x = g.open();
    let mut h = request("GET", "/catalog", &[(HOLD_HEADER, "1")]);
    let fx = x.on_request_headers(
        &mut h,
        &mut Props::default(),
        &mut shared::MemoryStore::default(),
        true,
    );
    assert!(removes(&fx, HOLD_HEADER));
    assert_eq!(sets(&fx, HOLD_HEADER), None);
    let fx = x.on_response_headers(
        &mut response(&[(HOLD_HEADER, "1")]),
        &mut Props::default(),
        &mut shared::MemoryStore::default(),
        false,
    );
    assert!(removes(&fx, HOLD_HEADER), "from the upstream too");

    // Protected, body under rules: removed first, then set by the guard.
    let mut x = g.open();
    let mut h = request(
        "POST",
        "/seal/1",
        &[
            (HOLD_HEADER, "forged"),
            ("content-type", "application/json"),
        ],
    );
    let fx = x.on_request_headers(
        &mut h,
        &mut Props::default(),
        &mut shared::MemoryStore::default(),
        false,
    );
    let pos = |want: &HeaderEdit| fx.header_edits.iter().position(|e| e == want);
    let removed = pos(&HeaderEdit::Remove(HOLD_HEADER.into())).unwrap();
    let set = pos(&HeaderEdit::Set(HOLD_HEADER, "1".into())).unwrap();
    assert!(removed < set, "{:?}", fx.header_edits);

    // Protected without body rules: only removed.
    let mut x = g.open();
    let mut h = request("GET", "/orders/1", &[(HOLD_HEADER, "1")]);
    let fx = x.on_request_headers(
        &mut h,
        &mut Props::default(),
        &mut shared::MemoryStore::default(),
        true,
    );
    assert!(removes(&fx, HOLD_HEADER));
    assert_eq!(sets(&fx, HOLD_HEADER), None);
}

// ---- route-level refusals ---------------------------------------------------

#[test]
fn kill_switch_refuses_with_503_an_event_and_holds_the_request() {
    let g = guard(base());
    let mut x = g.open();
    let mut h = request("POST", "/mws/Orders?Action=ListOrders", &[]);
    let fx = x.on_request_headers(
        &mut h,
        &mut Props::default(),
        &mut shared::MemoryStore::default(),
        false,
    );
    assert_eq!(fx.flow, Flow::Pause);
    assert_eq!(reply_of(&fx), (503, "route_disabled"));
    let e = &fx.events[0];
    assert_eq!(e.event, EventKind::KillSwitchRefusal);
    assert_eq!(e.route.as_deref(), Some("legacy-mws"));
    assert_eq!(e.method.as_deref(), Some("POST"));
    assert_eq!(e.request_id.as_deref(), Some(REQUEST_ID));
    assert!(fx
        .counters
        .contains(&"dpp_guard.events.kill_switch_refusal"));
    assert!(fx
        .counters
        .contains(&"dpp_guard.events_by_severity.warning"));
    assert!(x.refused());
    // Later phases: request bytes stay held, our reply passes unedited.
    assert_eq!(
        x.on_request_body(5, true, &mut Body::of(b"hello")).flow,
        Flow::Pause
    );
    assert_eq!(x.on_request_trailers(&mut no_body()).flow, Flow::Pause);
    let fx = x.on_response_headers(
        &mut response(&[]),
        &mut Props::default(),
        &mut shared::MemoryStore::default(),
        false,
    );
    assert!(fx.is_quiet() && fx.flow == Flow::Continue);
    assert_eq!(
        x.on_response_body(10, true, &mut no_body()).flow,
        Flow::Continue
    );
    assert_eq!(x.actions().refusals, ["route_disabled"]);
}

#[test]
fn protected_route_refuses_a_plaintext_client_unless_behind_a_trusted_terminator() {
    let strict = guard(with(base(), "transport", json!({})));
    let mut x = strict.open();
    let mut p = Props::default();
    let fx = x.on_request_headers(
        &mut request("GET", "/orders/1", &[]),
        &mut p,
        &mut shared::MemoryStore::default(),
        true,
    );
    assert_eq!(reply_of(&fx), (403, "downstream_tls_required"));
    assert_eq!(event_kinds(&fx), [EventKind::DownstreamPlaintextRefused]);

    let mut x = strict.open();
    let mut p = Props::default().with(Property::DownstreamTlsVersion, "TLSv1.1");
    let fx = x.on_request_headers(
        &mut request("GET", "/orders/1", &[]),
        &mut p,
        &mut shared::MemoryStore::default(),
        true,
    );
    assert_eq!(reply_of(&fx), (403, "downstream_tls_required"), "below 1.2");

    let mut x = strict.open();
    let mut p = Props::default().with(Property::DownstreamTlsVersion, "TLSv1.3");
    let fx = x.on_request_headers(
        &mut request("GET", "/orders/1", &[]),
        &mut p,
        &mut shared::MemoryStore::default(),
        true,
    );
    assert!(fx.reply.is_none());

    // Unprotected routes are not the policy's business.
    let mut x = strict.open();
    let mut p = Props::default();
    let fx = x.on_request_headers(
        &mut request("GET", "/catalog", &[]),
        &mut p,
        &mut shared::MemoryStore::default(),
        true,
    );
    assert!(fx.reply.is_none());
    assert_eq!(p.reads_of(Property::DownstreamTlsVersion), 0);

    // Trusted terminator: not even read.
    let mut x = guard(base()).open();
    let mut p = Props::default();
    let fx = x.on_request_headers(
        &mut request("GET", "/orders/1", &[]),
        &mut p,
        &mut shared::MemoryStore::default(),
        true,
    );
    assert!(fx.reply.is_none());
    assert_eq!(p.reads_of(Property::DownstreamTlsVersion), 0);
}

#[test]
fn no_store_routes_get_cache_headers_on_the_response() {
    let g = guard(base());
    let mut x = g.open();
    x.on_request_headers(
        &mut request("GET", "/orders/1", &[]),
        &mut Props::default(),
        &mut shared::MemoryStore::default(),
        true,
    );
    let fx = x.on_response_headers(
        &mut response(&[("cache-control", "public, max-age=600")]),
        &mut Props::default(),
        &mut shared::MemoryStore::default(),
        false,
    );
    assert_eq!(sets(&fx, "cache-control").as_deref(), Some("no-store"));
    assert_eq!(sets(&fx, "pragma").as_deref(), Some("no-cache"));
    assert_eq!(fx.flow, Flow::Continue);
}

#[test]
fn response_rules_ask_the_upstream_for_identity_encoding() {
    let g = guard(base());
    let mut x = g.open();
    let mut h = request("GET", "/open/1", &[("accept-encoding", "gzip")]);
    let fx = x.on_request_headers(
        &mut h,
        &mut Props::default(),
        &mut shared::MemoryStore::default(),
        true,
    );
    assert!(removes(&fx, "accept-encoding"));
    let mut x = g.open();
    let fx = x.on_request_headers(
        &mut request("GET", "/orders/1", &[("accept-encoding", "gzip")]),
        &mut Props::default(),
        &mut shared::MemoryStore::default(),
        true,
    );
    assert!(!removes(&fx, "accept-encoding"));
}

// ---- request bodies ---------------------------------------------------------

fn sealed_request(chunks: &[&[u8]], trailers: bool) -> (Exchange, Vec<Effects>) {
    let g = guard(base());
    let mut x = g.open();
    let mut out = vec![x.on_request_headers(
        &mut json_post("/seal/1"),
        &mut Props::default(),
        &mut shared::MemoryStore::default(),
        false,
    )];
    let mut buffered = Vec::new();
    for (i, chunk) in chunks.iter().enumerate() {
        buffered.extend_from_slice(chunk);
        let last = i + 1 == chunks.len() && !trailers;
        out.push(x.on_request_body(buffered.len(), last, &mut Body::of(&buffered)));
    }
    if trailers {
        out.push(x.on_request_trailers(&mut Body::of(&buffered)));
    }
    (x, out)
}

fn replaced(fx: &Effects) -> Value {
    let b = fx.body.as_ref().expect("a body replacement");
    serde_json::from_slice(&b.bytes).unwrap()
}

#[test]
fn a_split_body_is_held_until_its_end_then_rewritten() {
    let body = br#"{"email":"jane@example.com","n":1}"#;
    let (a, b) = body.split_at(9);
    let (x, fx) = sealed_request(&[a, b], false);
    let headers = &fx[0];
    assert!(removes(headers, "content-length"));
    assert_eq!(sets(headers, HOLD_HEADER).as_deref(), Some("1"));
    assert_eq!(
        headers.flow,
        Flow::Continue,
        "headers go on; the body is held"
    );
    assert_eq!(fx[1].flow, Flow::Pause);
    assert!(fx[1].body.is_none());
    let last = &fx[2];
    assert_eq!(last.flow, Flow::Continue);
    assert_eq!(last.body.as_ref().unwrap().len, body.len());
    let out = replaced(last);
    assert!(out["email"].as_str().unwrap().starts_with("dpg1."));
    assert_eq!(out["n"], 1);
    assert_eq!(x.actions().fields_encrypted, 1);
}

#[test]
fn trailers_end_a_held_body_and_it_is_rewritten_then() {
    let (_, fx) = sealed_request(&[br#"{"email":"a@b.c"}"#], true);
    assert_eq!(fx[1].flow, Flow::Pause);
    assert!(replaced(&fx[2])["email"]
        .as_str()
        .unwrap()
        .starts_with("dpg1."));
}

#[test]
fn empty_bodies_pass() {
    let g = guard(base());
    // No body at all: nothing held.
    let mut x = g.open();
    let fx = x.on_request_headers(
        &mut json_post("/seal/1"),
        &mut Props::default(),
        &mut shared::MemoryStore::default(),
        true,
    );
    assert!(fx.header_edits.is_empty() && fx.reply.is_none());
    // Headers said a body follows; it is empty.
    let mut x = g.open();
    x.on_request_headers(
        &mut json_post("/seal/1"),
        &mut Props::default(),
        &mut shared::MemoryStore::default(),
        false,
    );
    let fx = x.on_request_body(0, true, &mut Body::unreadable());
    assert_eq!(fx.flow, Flow::Continue);
    assert!(fx.body.is_none() && fx.reply.is_none());
}

#[test]
fn a_body_without_selected_fields_is_forwarded_as_is() {
    let (x, fx) = sealed_request(&[br#"{"other":"x"}"#], false);
    assert_eq!(fx[1].flow, Flow::Continue);
    assert!(fx[1].body.is_none());
    assert_eq!(x.actions().fields_encrypted, 0);
}

#[test]
fn oversize_bodies_are_refused_by_declared_length_and_by_size() {
    let g = guard(base());
    let mut x = g.open();
    let mut h = request(
        "POST",
        "/seal/1",
        &[
            ("content-type", "application/json"),
            ("content-length", "65"),
        ],
    );
    let fx = x.on_request_headers(
        &mut h,
        &mut Props::default(),
        &mut shared::MemoryStore::default(),
        false,
    );
    assert_eq!(reply_of(&fx), (413, "body_too_large"));
    assert!(
        fx.header_edits.is_empty(),
        "nothing marked for a refused body"
    );
    assert_eq!(event_kinds(&fx), [EventKind::BodyTooLarge]);

    let big = [b' '; 65];
    let (x, fx) = sealed_request(&[&big[..40], &big[40..]], false);
    assert_eq!(fx[1].flow, Flow::Pause);
    assert_eq!(reply_of(&fx[2]), (413, "body_too_large"));
    assert_eq!(fx[2].flow, Flow::Pause);
    assert!(fx[2].body.is_none());
    assert_eq!(x.actions().refusals, ["body_too_large"]);
    let e = &fx[2].events[0];
    assert_eq!(e.detail.as_deref(), Some("request"));
    assert_eq!(e.route.as_deref(), Some("seal"));
    assert_eq!(e.method.as_deref(), Some("POST"));
}

#[test]
fn wrong_content_type_or_encoding_is_refused_before_anything_is_held() {
    let g = guard(base());
    for (extra, want) in [
        (
            vec![("content-type", "text/plain")],
            (415, "unsupported_content_type"),
        ),
        (vec![], (415, "unsupported_content_type")),
        (
            vec![
                ("content-type", "application/json"),
                ("content-encoding", "gzip"),
            ],
            (415, "unsupported_content_encoding"),
        ),
    ] {
        let mut x = g.open();
        let fx = x.on_request_headers(
            &mut request("POST", "/seal/1", &extra),
            &mut Props::default(),
            &mut shared::MemoryStore::default(),
            false,
        );
        assert_eq!(reply_of(&fx), want, "{extra:?}");
        assert_eq!(fx.flow, Flow::Pause);
    }
    // `non_json: pass`: a non-JSON body streams through untouched.
    let mut x = g.open();
    let fx = x.on_request_headers(
        &mut request("POST", "/lenient/1", &[("content-type", "text/plain")]),
        &mut Props::default(),
        &mut shared::MemoryStore::default(),
        false,
    );
    assert!(fx.reply.is_none() && fx.header_edits.is_empty());
    let fx = x.on_request_body(4, true, &mut Body::of(b"text"));
    assert!(fx.is_quiet());
    // Vendor JSON types are JSON.
    let mut x = g.open();
    let fx = x.on_request_headers(
        &mut request(
            "POST",
            "/seal/1",
            &[("content-type", "application/vnd.api+json; charset=utf-8")],
        ),
        &mut Props::default(),
        &mut shared::MemoryStore::default(),
        false,
    );
    assert_eq!(sets(&fx, HOLD_HEADER).as_deref(), Some("1"));
}

#[test]
fn malformed_json_is_refused_with_400() {
    let (_, fx) = sealed_request(&[br#"{"email": "#], false);
    assert_eq!(reply_of(&fx[1]), (400, "malformed_json"));
    assert_eq!(event_kinds(&fx[1]), [EventKind::MalformedBody]);
}

// ---- response bodies --------------------------------------------------------

fn open_response(body: &[u8], headers: &[(&str, &str)]) -> (Effects, Effects) {
    let g = guard(base());
    let mut x = g.open();
    x.on_request_headers(
        &mut request("GET", "/open/1", &[]),
        &mut Props::default(),
        &mut shared::MemoryStore::default(),
        true,
    );
    let h = x.on_response_headers(
        &mut response(headers),
        &mut Props::default(),
        &mut shared::MemoryStore::default(),
        false,
    );
    let b = x.on_response_body(body.len(), true, &mut Body::of(body));
    (h, b)
}

#[test]
fn response_bodies_are_refused_with_502() {
    let (h, b) = open_response(
        br#"{"email":"plain@example.com"}"#,
        &[("content-type", "application/json")],
    );
    assert_eq!(sets(&h, HOLD_HEADER).as_deref(), Some("1"));
    assert!(removes(&h, "content-length"));
    assert_eq!(reply_of(&b), (502, "envelope_rejected"));
    assert_eq!(
        b.events[0].detail.as_deref(),
        Some("response: not_an_envelope")
    );
    let (h, _) = open_response(
        b"{}",
        &[
            ("content-type", "application/json"),
            ("content-encoding", "br"),
        ],
    );
    assert_eq!(reply_of(&h), (502, "unsupported_content_encoding"));
}

#[test]
fn a_response_envelope_opens_for_the_client_and_a_request_envelope_does_not() {
    let g = guard(base());
    let response_body = |x: &mut Exchange, body: &[u8]| {
        x.on_response_headers(
            &mut response(&[("content-type", "application/json")]),
            &mut Props::default(),
            &mut shared::MemoryStore::default(),
            false,
        );
        x.on_response_body(body.len(), true, &mut Body::of(body))
    };
    // Sealed in a response on one route, opened in a response on another:
    // the envelope is bound to its field path, context and direction.
    let mut x = g.open();
    x.on_request_headers(
        &mut request("GET", "/reply-seal/1", &[]),
        &mut Props::default(),
        &mut shared::MemoryStore::default(),
        true,
    );
    let sealed = response_body(&mut x, br#"{"email":"jane@example.com"}"#);
    let sealed = sealed.body.expect("sealed").bytes;
    let mut x = g.open();
    x.on_request_headers(
        &mut request("GET", "/open/1", &[]),
        &mut Props::default(),
        &mut shared::MemoryStore::default(),
        true,
    );
    let fx = response_body(&mut x, &sealed);
    assert_eq!(replaced(&fx)["email"], "jane@example.com");
    assert_eq!(x.actions().fields_decrypted, 1);

    // A request envelope replayed into a response does not open.
    let (_, req) = sealed_request(&[br#"{"email":"jane@example.com"}"#], false);
    let req = req[1].body.as_ref().unwrap().bytes.clone();
    let mut x = g.open();
    x.on_request_headers(
        &mut request("GET", "/open/1", &[]),
        &mut Props::default(),
        &mut shared::MemoryStore::default(),
        true,
    );
    let fx = response_body(&mut x, &req);
    assert_eq!(reply_of(&fx), (502, "envelope_rejected"));
}

// ---- host faults ------------------------------------------------------------

#[test]
fn request_headers_that_cannot_be_read_are_refused_never_passed() {
    let g = guard(base());
    let mut x = g.open();
    let fx = x.on_request_headers(
        &mut Headers::gone(),
        &mut Props::default(),
        &mut shared::MemoryStore::default(),
        false,
    );
    assert_eq!(reply_of(&fx), (500, "check_unavailable"));
    assert_eq!(fx.flow, Flow::Pause);
    assert_eq!(event_kinds(&fx), [EventKind::HostCallFailed]);
    let detail = fx.events[0].detail.as_deref().unwrap();
    assert!(
        detail.contains("request headers") && detail.contains("proxy_get_header_map_value"),
        "{detail}"
    );
    assert!(fx.counters.contains(&"dpp_guard.events.host_call_failed"));
    assert_eq!(
        x.on_request_body(3, true, &mut Body::of(b"abc")).flow,
        Flow::Pause
    );
}

#[test]
fn a_property_the_route_decision_needs_is_a_refusal_when_unreadable() {
    let strict = guard(with(base(), "transport", json!({})));
    let mut x = strict.open();
    let mut p = Props::default().failing(Property::DownstreamTlsVersion);
    let fx = x.on_request_headers(
        &mut request("GET", "/orders/1", &[]),
        &mut p,
        &mut shared::MemoryStore::default(),
        true,
    );
    assert_eq!(reply_of(&fx), (500, "check_unavailable"));
    assert_eq!(fx.events[0].route.as_deref(), Some("orders"));

    let by_name = guard(with(
        base(),
        "routes",
        json!([{"name": "r", "match": {"route_name": "svc"}}]),
    ));
    let mut x = by_name.open();
    let mut p = Props::default().failing(Property::RouteName);
    let fx = x.on_request_headers(
        &mut request("GET", "/x", &[]),
        &mut p,
        &mut shared::MemoryStore::default(),
        true,
    );
    assert_eq!(reply_of(&fx), (500, "check_unavailable"));
}

#[test]
fn a_body_that_cannot_be_read_is_refused() {
    for mut body in [
        Body::unreadable(),
        Body {
            short: true,
            ..Body::of(br#"{"email":"a@b.c"}"#)
        },
    ] {
        let g = guard(base());
        let mut x = g.open();
        x.on_request_headers(
            &mut json_post("/seal/1"),
            &mut Props::default(),
            &mut shared::MemoryStore::default(),
            false,
        );
        let fx = x.on_request_body(17, true, &mut body);
        assert_eq!(reply_of(&fx), (500, "check_unavailable"));
        assert!(fx.body.is_none());
        assert_eq!(event_kinds(&fx), [EventKind::HostCallFailed]);
        assert!(fx.events[0]
            .detail
            .as_deref()
            .unwrap()
            .contains("proxy_get_buffer_bytes"));
    }
    // A response body: 502.
    let g = guard(base());
    let mut x = g.open();
    x.on_request_headers(
        &mut request("GET", "/open/1", &[]),
        &mut Props::default(),
        &mut shared::MemoryStore::default(),
        true,
    );
    x.on_response_headers(
        &mut response(&[("content-type", "application/json")]),
        &mut Props::default(),
        &mut shared::MemoryStore::default(),
        false,
    );
    let fx = x.on_response_body(5, true, &mut Body::unreadable());
    assert_eq!(reply_of(&fx), (502, "check_unavailable"));
}

#[test]
fn response_headers_that_cannot_be_read_are_refused() {
    let g = guard(base());
    let mut x = g.open();
    x.on_request_headers(
        &mut request("GET", "/catalog", &[]),
        &mut Props::default(),
        &mut shared::MemoryStore::default(),
        true,
    );
    let fx = x.on_response_headers(
        &mut Headers::gone(),
        &mut Props::default(),
        &mut shared::MemoryStore::default(),
        false,
    );
    assert_eq!(reply_of(&fx), (502, "check_unavailable"));
}

#[test]
fn an_effect_the_host_cannot_apply_is_refused_and_a_failed_refusal_resets() {
    let g = guard(base());
    let mut x = g.open();
    let fx = x.on_request_headers(
        &mut json_post("/seal/1"),
        &mut Props::default(),
        &mut shared::MemoryStore::default(),
        false,
    );
    assert_eq!(sets(&fx, HOLD_HEADER).as_deref(), Some("1"));
    // Setting the hold marker failed: the body must not go out unheld.
    let fx = x.host_failed(HostFault::status("proxy_replace_header_map_value", 2));
    assert_eq!(reply_of(&fx), (500, "check_unavailable"));
    assert!(!fx.reset);
    // Sending that reply failed too: reset, never pass.
    let fx = x.host_failed(HostFault::status("proxy_send_local_response", 1));
    assert!(fx.reset && fx.reply.is_none());
    assert_eq!(fx.flow, Flow::Pause);
    assert_eq!(event_kinds(&fx), [EventKind::HostCallFailed]);
}

#[test]
fn a_fact_missing_at_log_is_reported_and_the_record_still_written() {
    let g = guard(with(base(), "logging", json!({"access_records": "all"})));
    let mut x = g.open();
    x.on_request_headers(
        &mut request("GET", "/catalog", &[]),
        &mut Props::default(),
        &mut shared::MemoryStore::default(),
        true,
    );
    let mut p = Props::default().failing(Property::UpstreamTlsVersion);
    let fx = x.on_log(&mut p, &mut shared::MemoryStore::default());
    assert_eq!(event_kinds(&fx), [EventKind::HostCallFailed]);
    assert!(fx.reply.is_none() && !fx.reset);
    let record = fx.record.expect("record");
    assert_eq!(record.actions.events, [EventKind::HostCallFailed]);
    assert_eq!(record.tls.upstream, None, "the fact it could not read");
}

// ---- plaintext watch --------------------------------------------------------

fn logged(g: &Rc<Guard>, path: &str, props: &mut Props) -> Effects {
    let mut x = g.open();
    x.on_request_headers(
        &mut request("GET", path, &[]),
        &mut Props::default(),
        &mut shared::MemoryStore::default(),
        true,
    );
    x.on_log(props, &mut shared::MemoryStore::default())
}

#[test]
fn a_plaintext_upstream_no_exemption_covers_is_reported_once_at_log() {
    let g = guard(base());
    let mut p = Props::default().plaintext_upstream("bypass");
    let fx = logged(&g, "/orders/1", &mut p);
    assert_eq!(event_kinds(&fx), [EventKind::PlaintextUpstreamObserved]);
    assert!(fx.events[0]
        .detail
        .as_deref()
        .unwrap()
        .contains("cluster=bypass"));
    assert!(fx.counters.contains(&PLAINTEXT_UPSTREAM_METRIC));
    assert!(fx
        .counters
        .contains(&"dpp_guard.events_by_severity.critical"));
    assert_eq!(fx.events[0].request_id.as_deref(), Some(REQUEST_ID));

    // Exempt cluster: nothing.
    let exempt = guard(with(
        base(),
        "transport.upstream",
        json!({"clusters": {"inbound": {"exempt": {"reason": "pod-local hop"}}}}),
    ));
    let fx = logged(
        &exempt,
        "/orders/1",
        &mut Props::default().plaintext_upstream("inbound"),
    );
    assert!(fx.events.is_empty());

    // TLS upstream: one read settles it (records off, so the watch is all
    // that reads).
    let quiet = guard(with(base(), "logging.access_records", json!("off")));
    let mut p = Props::default().with(Property::UpstreamTlsVersion, "TLSv1.3");
    let fx = logged(&quiet, "/orders/1", &mut p);
    assert!(fx.events.is_empty());
    assert_eq!(p.total_reads(), 1);

    // A local reply (nothing went upstream): no alarm.
    let mut p = Props::default()
        .with(Property::UpstreamLocalAddress, "127.0.0.1:1")
        .with(Property::ResponseCodeDetails, "route_disabled");
    assert!(logged(&g, "/mws/x", &mut p).events.is_empty());
}

#[test]
fn with_a_record_the_watch_asks_for_the_upstream_connection_only_to_raise_an_alarm() {
    // The record reads cluster and details anyway; they settle an exempt
    // cluster (a pod-local hop) and a reply that never went upstream.
    let exempt = guard(with(
        base(),
        "transport.upstream",
        json!({"clusters": {"inbound": {"exempt": {"reason": "pod-local hop"}}}}),
    ));
    assert!(exempt.policy().logging.access_records.covers(true));
    let mut p = Props::default().plaintext_upstream("inbound");
    let fx = logged(&exempt, "/orders/1", &mut p);
    assert!(fx.events.is_empty());
    assert!(fx.record.is_some());
    assert_eq!(p.reads_of(Property::UpstreamLocalAddress), 0);

    let mut p = Props::default()
        .with(Property::UpstreamLocalAddress, "127.0.0.1:1")
        .with(Property::ResponseCodeDetails, "route_disabled");
    assert!(logged(&exempt, "/orders/1", &mut p).events.is_empty());
    assert_eq!(p.reads_of(Property::UpstreamLocalAddress), 0);

    // An alarm still needs the connection, read once.
    let mut p = Props::default().plaintext_upstream("bypass");
    let fx = logged(&exempt, "/orders/1", &mut p);
    assert_eq!(event_kinds(&fx), [EventKind::PlaintextUpstreamObserved]);
    assert_eq!(p.reads_of(Property::UpstreamLocalAddress), 1);
    // No connection at all (the details claim otherwise): no alarm.
    let mut p = Props::default()
        .with(Property::ResponseCodeDetails, "via_upstream")
        .with(Property::ClusterName, "bypass");
    assert!(logged(&exempt, "/orders/1", &mut p).events.is_empty());

    // Without a record the connection is asked first, and settles a
    // stream that had none in one read after the TLS version.
    let quiet = guard(with(base(), "logging.access_records", json!("off")));
    let mut p = Props::default();
    assert!(logged(&quiet, "/orders/1", &mut p).events.is_empty());
    assert_eq!(p.total_reads(), 2);
}

#[test]
fn unprotected_requests_are_watched_on_a_sample_protected_ones_always() {
    let g = guard(base());
    let mut reported = 0;
    for i in 0..(2 * UNPROTECTED_WATCH_PERIOD) {
        let mut p = Props::default().plaintext_upstream("bypass");
        let fx = logged(&g, "/catalog", &mut p);
        let watched = p.total_reads() > 0;
        assert_eq!(watched, i % UNPROTECTED_WATCH_PERIOD == 0, "request {i}");
        reported += fx.events.len();
    }
    assert_eq!(
        reported, 2,
        "the first request of the worker, then one in the period"
    );
    for _ in 0..3 {
        let mut p = Props::default().plaintext_upstream("bypass");
        assert_eq!(logged(&g, "/orders/1", &mut p).events.len(), 1);
    }
}

// ---- access records ---------------------------------------------------------

fn full_props() -> Props {
    Props::default()
        .with(Property::RouteName, "svc")
        .with(Property::ClusterName, "upstream")
        .with(Property::UpstreamTlsVersion, "TLSv1.3")
        .with(Property::DownstreamTlsVersion, "TLSv1.2")
        .with(Property::SourceAddress, "10.1.2.3:4444")
        .with(Property::ResponseCodeDetails, "via_upstream")
        .with_u64(Property::ResponseCode, 200)
        .with_u64(Property::RequestDuration, 5_000)
        .with_u64(Property::RequestTotalSize, 100)
        .with_u64(Property::ResponseTotalSize, 200)
}

#[test]
fn the_record_holds_the_request_and_response_facts_and_what_was_done() {
    let policy = with(
        base(),
        "logging",
        json!({"access_records": "all", "request_headers": ["User-Agent"],
               "principal_header": "X-Principal"}),
    );
    let g = guard(policy);
    let mut x = g.open();
    let mut h = request(
        "GET",
        "/orders/1?BuyerEmail=x",
        &[("user-agent", "curl/8"), ("x-principal", "svc-a")],
    );
    let mut p = full_props();
    x.on_request_headers(&mut h, &mut p, &mut shared::MemoryStore::default(), true);
    x.on_response_headers(
        &mut response(&[]),
        &mut p,
        &mut shared::MemoryStore::default(),
        false,
    );
    let fx = x.on_log(&mut p, &mut shared::MemoryStore::default());
    let r = fx.record.expect("a record");
    assert_eq!(r.path, "/orders/1?BuyerEmail=[redacted]", "scrubbed");
    assert_eq!(r.method, "GET");
    assert_eq!(r.request_id.as_deref(), Some(REQUEST_ID));
    assert_eq!(r.policy_route.as_deref(), Some("orders"));
    assert!(r.headers.contains_key("user-agent"), "{:?}", r.headers);
    assert!(r.principal.is_some(), "from the principal header");
    assert_eq!(r.status, Some(200));
    assert_eq!(r.route.as_deref(), Some("svc"));
    assert_eq!(r.upstream_cluster.as_deref(), Some("upstream"));
    assert_eq!(r.duration_us, Some(5));
    assert_eq!((r.request_bytes, r.response_bytes), (Some(100), Some(200)));
    assert_eq!(r.tls.downstream.as_deref(), Some("TLSv1.2"));
    assert_eq!(r.tls.upstream.as_deref(), Some("TLSv1.3"));
    assert!(!r.tls.downstream_mtls);
    let client = r.client.as_deref().unwrap();
    assert!(!client.contains("10.1.2.3"), "{client}");
    assert_eq!(r.time, "2026-01-01T00:00:00.000Z");
    // Every property at most once per stream, although the watch and the
    // record both want the upstream's TLS version.
    for prop in Property::ALL {
        assert!(
            p.reads_of(*prop) <= 1,
            "{prop:?} read {} times",
            p.reads_of(*prop)
        );
    }
}

#[test]
fn records_cover_the_requests_the_policy_says() {
    for (setting, unprotected, protected) in [
        ("all", true, true),
        ("protected", false, true),
        ("off", false, false),
    ] {
        let g = guard(with(base(), "logging.access_records", json!(setting)));
        let fx = logged(&g, "/catalog", &mut Props::default());
        assert_eq!(fx.record.is_some(), unprotected, "{setting}");
        let fx = logged(&g, "/orders/1", &mut Props::default());
        assert_eq!(fx.record.is_some(), protected, "{setting}");
    }
    // A refused request's record names the refusal and the event.
    let g = guard(base());
    let fx = logged(&g, "/mws/x", &mut Props::default());
    let rec = fx.record.unwrap();
    assert_eq!(rec.actions.refusals, ["route_disabled"]);
    assert_eq!(rec.actions.events, [EventKind::KillSwitchRefusal]);
    assert_eq!(rec.policy_route.as_deref(), Some("legacy-mws"));
}

#[test]
fn a_request_answered_before_this_filter_is_recorded_when_records_cover_all() {
    for (setting, recorded) in [("all", true), ("protected", false)] {
        let g = guard(with(base(), "logging.access_records", json!(setting)));
        let mut x = g.open();
        let mut p = full_props().with_u64(Property::ResponseCode, 429);
        let fx = x.on_log(&mut p, &mut shared::MemoryStore::default());
        assert_eq!(fx.record.is_some(), recorded, "{setting}");
        if let Some(r) = fx.record {
            assert_eq!(r.status, Some(429));
            assert_eq!(r.policy_route, None);
        }
        assert!(fx.events.is_empty(), "nothing went upstream from here");
    }
}

#[test]
fn a_plaintext_client_connection_is_not_asked_whether_it_has_a_client_certificate() {
    let g = guard(base());
    let mut x = g.open();
    x.on_request_headers(
        &mut request("GET", "/orders/1", &[]),
        &mut Props::default(),
        &mut shared::MemoryStore::default(),
        true,
    );
    // A host that claims mTLS on a connection without TLS is not believed:
    // the flag is never read.
    let mut p = Props::default().with(Property::DownstreamMtls, "\u{1}");
    let rec = x
        .on_log(&mut p, &mut shared::MemoryStore::default())
        .record
        .unwrap();
    assert!(!rec.tls.downstream_mtls);
    assert_eq!(p.reads_of(Property::DownstreamMtls), 0);
    assert_eq!(p.reads_of(Property::PeerSubject), 0);
}

#[test]
fn the_mtls_subject_is_the_principal_when_no_header_names_one() {
    let g = guard(base());
    let mut x = g.open();
    x.on_request_headers(
        &mut request("GET", "/orders/1", &[]),
        &mut Props::default(),
        &mut shared::MemoryStore::default(),
        true,
    );
    let mut p = Props::default()
        .with(Property::DownstreamTlsVersion, "TLSv1.3")
        .with(Property::PeerSubject, "CN=svc-b")
        .with(Property::DownstreamMtls, "\u{1}");
    let rec = x
        .on_log(&mut p, &mut shared::MemoryStore::default())
        .record
        .unwrap();
    assert!(rec.tls.downstream_mtls);
    assert!(rec.principal.is_some(), "the certificate subject, scrubbed");
    let mut x = g.open();
    x.on_request_headers(
        &mut request("GET", "/orders/1", &[]),
        &mut Props::default(),
        &mut shared::MemoryStore::default(),
        true,
    );
    let rec = x
        .on_log(
            &mut Props::default().with(Property::PeerSubject, "CN=svc-b"),
            &mut shared::MemoryStore::default(),
        )
        .record
        .unwrap();
    assert!(rec.principal.is_none(), "no client certificate, no subject");
}

mod monitoring;
