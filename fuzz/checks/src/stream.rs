//! The whole per-stream state machine (`dpp_core::stream::Exchange`) in a
//! small model of Envoy: a request with headers, a body in arbitrary
//! chunks and maybe trailers, the upstream's response the same way, then
//! the log phase; a host call may fail at any read.
//!
//! The model applies the effects as the plugin does: header edits; a
//! paused body is buffered (the next callback sees everything buffered), a
//! continued one is forwarded; a body replacement replaces the buffer; a
//! local reply ends the direction and goes back through the response
//! callbacks; a message marked with the hold header is held by the hold
//! filters until its body is through.
//!
//! Input: four flag bytes (route, method, request and response headers,
//! trailers, a forged hold marker, the read that fails), request chunk
//! sizes, response chunk sizes, the request body (u16 length), then the
//! response body (or, by flag, the route's document sealed for responses,
//! or that document with one byte changed).
//!
//! Properties:
//! 1. no hang: a direction that reaches its end continues, or was answered;
//! 2. a refused request sent nothing upstream, not even its headers; a
//!    refused response sent nothing of the upstream's response to the
//!    client, and was never refused after its headers left;
//! 3. fail closed: a forwarded JSON request body has an envelope at every
//!    position an encrypt rule selects (serde_json's tree, matched
//!    independently); a forwarded JSON response has none where a decrypt
//!    rule selects; a body no rule needs passes byte for byte;
//! 4. a host call that fails in a request or response phase ends in a
//!    refusal (or a reset) with a `host_call_failed` event;
//! 5. the outcome does not depend on how the bodies were chunked.

use std::cell::Cell;
use std::rc::Rc;

use dpp_core::events::EventKind;
use dpp_core::json;
use dpp_core::json::selector::Selector;
use dpp_core::policy::{Direction, FieldAction};
use dpp_core::protect;
use dpp_core::stream::shared;
use dpp_core::stream::{
    BodyView, Effects, Exchange, Flow, Guard, HeaderEdit, HeaderView, HostFault, Property,
    PropertySource,
};
use dpp_core::wire::HOLD_HEADER;
use dpp_core::Policy;
use serde_json::Value;

use crate::fixtures::{log_key, KEYRING_TEXT};
use crate::splice::{has_duplicate_members, selected_positions_hold, Seg};
use crate::Input;

const POLICY: &str = r#"{
  "version": 1,
  "keys": {"env": "DPP_GUARD_KEYS"},
  "routes": [
    {"name": "orders", "match": {"path": {"prefix": "/orders/"}}, "no_store": true,
     "encrypt": [{"direction": "request", "preset": "sp-api-orders", "context": "c"}],
     "decrypt": [{"direction": "response", "preset": "sp-api-orders", "context": "c"}],
     "body": {"max_bytes": 700}},
    {"name": "explicit", "match": {"path": {"prefix": "/e/"}},
     "encrypt": [{"direction": "request", "selectors": ["$..BuyerEmail", "$.a[*]"], "mode": "deterministic", "blind_index": true}],
     "decrypt": [{"direction": "response", "selectors": ["$..BuyerEmail", "$.a[*]"]}],
     "body": {"max_bytes": 4096, "non_json": "pass"}},
    {"name": "killed", "match": {"path": {"prefix": "/mws/"}}, "kill_switch": true}
  ]
}"#;

const PATHS: &[&str] = &[
    "/orders/v0/orders/1",
    "/e/x",
    "/mws/x",
    "/public/x",
    "/orders/../public",
    "/ORDERS/v0",
];

const DOCUMENT: &str = r#"{"payload":{"AmazonOrderId":"1","BuyerEmail":"q@r.st","BuyerName":"Q R","ShippingAddress":{"City":"C","Phone":"1"}},"a":[1,"x"]}"#;

const CONTENT_TYPES: &[Option<&str>] = &[
    Some("application/json"),
    Some("application/json; charset=utf-8"),
    Some("application/problem+json"),
    Some("text/plain"),
    None,
    Some("APPLICATION/JSON"),
    Some("application/jsonx"),
    Some(""),
];

const ENCODINGS: &[Option<&str>] = &[None, Some("identity"), Some("gzip"), Some("br, identity")];

/// The guard and the route document sealed for responses, per thread.
struct Fixture {
    guard: Rc<Guard>,
    sealed: Vec<Vec<u8>>,
}

fn fixture<R>(f: impl FnOnce(&Fixture) -> R) -> R {
    thread_local! {
        static F: Fixture = {
            let policy = Policy::from_json(POLICY.as_bytes()).expect("fixture policy parses");
            let keyring = policy
                .keys
                .as_ref()
                .and_then(|k| k.load(|_| Some(KEYRING_TEXT.to_string())).ok());
            let keyring_for_sealing = policy
                .keys
                .as_ref()
                .and_then(|k| k.load(|_| Some(KEYRING_TEXT.to_string())).ok())
                .expect("fixture keyring");
            // Each route's document as its service would send it.
            let sealed = policy
                .routes
                .iter()
                .map(|r| match r.fields(Direction::Response) {
                    Some(rules) => protect::rewrite(&rules.with_action(FieldAction::Encrypt), &keyring_for_sealing, DOCUMENT.as_bytes())
                        .ok()
                        .flatten()
                        .unwrap_or_else(|| DOCUMENT.as_bytes().to_vec()),
                    None => DOCUMENT.as_bytes().to_vec(),
                })
                .collect();
            let scrubber = policy.logging.scrubber(Some(log_key()), policy.selector_leaf_names());
            Fixture { guard: Rc::new(Guard::new(policy, keyring, scrubber)), sealed }
        };
    }
    F.with(f)
}

/// Every host read, counted; the `fail_at`-th one fails.
struct Host {
    reads: Cell<u32>,
    fail_at: Option<u32>,
    failed_in: Cell<Option<&'static str>>,
    phase: Cell<&'static str>,
}

impl Host {
    fn read(&self) -> Result<(), HostFault> {
        let n = self.reads.get() + 1;
        self.reads.set(n);
        if Some(n) == self.fail_at {
            self.failed_in.set(Some(self.phase.get()));
            return Err(HostFault::status("fuzz", 2));
        }
        Ok(())
    }
}

struct Headers<'h> {
    pairs: Vec<(String, String)>,
    host: &'h Host,
}

impl HeaderView for Headers<'_> {
    fn get(&mut self, name: &str) -> Result<Option<String>, HostFault> {
        self.host.read()?;
        Ok(self
            .pairs
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone()))
    }
}

impl Headers<'_> {
    fn apply(&mut self, edits: &[HeaderEdit]) {
        for edit in edits {
            match edit {
                HeaderEdit::Set(name, value) => {
                    self.pairs.retain(|(k, _)| k != name);
                    self.pairs.push((name.to_string(), value.to_string()));
                }
                HeaderEdit::Remove(name) => self.pairs.retain(|(k, _)| k.as_str() != name.as_ref()),
            }
        }
    }

    fn has(&self, name: &str) -> bool {
        self.pairs.iter().any(|(k, _)| k == name)
    }
}

struct Buffered<'b, 'h> {
    bytes: &'b [u8],
    host: &'h Host,
}

impl BodyView for Buffered<'_, '_> {
    fn read(&mut self, len: usize) -> Result<Vec<u8>, HostFault> {
        self.host.read()?;
        self.bytes
            .get(..len)
            .map(<[u8]>::to_vec)
            .ok_or(HostFault::short_read("fuzz"))
    }
}

struct Props<'h> {
    host: &'h Host,
}

impl PropertySource for Props<'_> {
    fn get(&mut self, property: Property) -> Result<Option<Vec<u8>>, HostFault> {
        self.host.read()?;
        Ok(match property {
            Property::DownstreamTlsVersion | Property::UpstreamTlsVersion => {
                Some(b"TLSv1.3".to_vec())
            }
            Property::UpstreamLocalAddress => Some(b"127.0.0.1:40000".to_vec()),
            Property::ClusterName => Some(b"service".to_vec()),
            Property::ResponseCode => Some(200u64.to_le_bytes().to_vec()),
            Property::SourceAddress => Some(b"203.0.113.7:50000".to_vec()),
            _ => None,
        })
    }

    fn unix_time_nanos(&mut self) -> u64 {
        1_795_910_400_000_000_000
    }

    fn get_path(&mut self, _path: &[&str]) -> Result<Option<Vec<u8>>, HostFault> {
        self.host.read()?;
        Ok(None)
    }
}

/// A message: headers, body chunks, trailers.
struct Message<'a> {
    headers: Vec<(String, String)>,
    chunks: Vec<&'a [u8]>,
    trailers: bool,
}

impl Message<'_> {
    fn body(&self) -> Vec<u8> {
        self.chunks.concat()
    }
}

/// What the model saw.
#[derive(Debug, Default, PartialEq)]
struct Outcome {
    /// Local reply (status, code) and in which direction it came.
    request_reply: Option<(u32, &'static str)>,
    response_reply: Option<(u32, &'static str)>,
    reset: bool,
    upstream_headers: bool,
    upstream_body: Vec<u8>,
    client_headers: bool,
    client_body: Vec<u8>,
    events: Vec<EventKind>,
}

impl Outcome {
    fn take(&mut self, fx: &Effects) {
        self.events.extend(fx.events.iter().map(|e| e.event));
        self.reset |= fx.reset;
    }

    /// The part chunking may not change (nonces differ between runs).
    fn class(&self) -> impl PartialEq + std::fmt::Debug {
        (
            self.request_reply,
            self.response_reply,
            self.reset,
            self.upstream_headers,
            self.client_headers,
            self.events.clone(),
        )
    }
}

/// Runs one exchange through the model.
fn run(ex: &mut Exchange, host: &Host, request: &Message<'_>, response: &Message<'_>) -> Outcome {
    let mut out = Outcome::default();
    host.phase.set("request");
    let mut props = Props { host };
    let mut headers = Headers {
        pairs: request.headers.clone(),
        host,
    };
    let end = request.chunks.iter().all(|c| c.is_empty()) && !request.trailers;
    let fx = ex.on_request_headers(
        &mut headers,
        &mut props,
        &mut shared::MemoryStore::default(),
        end,
    );
    out.take(&fx);
    let mut answered = fx.reply.as_ref().map(|r| (r.status, r.code));
    if answered.is_none() && !fx.reset {
        assert_eq!(
            fx.flow,
            Flow::Continue,
            "request headers paused without a reply"
        );
        headers.apply(&fx.header_edits);
        let held = headers.has(HOLD_HEADER);
        out.upstream_headers = !held;
        let mut buffer: Vec<u8> = Vec::new();
        let last = request.chunks.len();
        for (i, chunk) in request.chunks.iter().enumerate() {
            if end || answered.is_some() || out.reset {
                break;
            }
            if chunk.is_empty() && (i + 1 < last || request.trailers) {
                continue;
            }
            buffer.extend_from_slice(chunk);
            let eos = i + 1 == last && !request.trailers;
            let fx = ex.on_request_body(
                buffer.len(),
                eos,
                &mut Buffered {
                    bytes: &buffer,
                    host,
                },
            );
            out.take(&fx);
            answered = fx.reply.as_ref().map(|r| (r.status, r.code));
            if answered.is_some() || fx.reset {
                break;
            }
            if let Some(b) = &fx.body {
                buffer.splice(..b.len, b.bytes.iter().copied());
            }
            match fx.flow {
                Flow::Continue => {
                    out.upstream_body.append(&mut buffer);
                }
                Flow::Pause => assert!(!eos, "the request ends paused, without a reply"),
            }
        }
        if request.trailers && answered.is_none() && !out.reset {
            let fx = ex.on_request_trailers(&mut Buffered {
                bytes: &buffer,
                host,
            });
            out.take(&fx);
            answered = fx.reply.as_ref().map(|r| (r.status, r.code));
            if answered.is_none() && !fx.reset {
                assert_eq!(
                    fx.flow,
                    Flow::Continue,
                    "request trailers paused without a reply"
                );
                if let Some(b) = &fx.body {
                    buffer.splice(..b.len, b.bytes.iter().copied());
                }
                out.upstream_body.append(&mut buffer);
            }
        }
        if answered.is_none() && !out.reset {
            // The hold filter releases the headers with the whole body.
            out.upstream_headers = true;
        }
    }
    out.request_reply = answered;

    host.phase.set("response");
    if out.request_reply.is_some() || out.reset {
        if !out.reset {
            // The local reply passes the response callbacks.
            let mut local = Headers {
                pairs: vec![
                    (":status".into(), "400".into()),
                    ("content-type".into(), "application/json".into()),
                ],
                host,
            };
            let fx = ex.on_response_headers(
                &mut local,
                &mut props,
                &mut shared::MemoryStore::default(),
                false,
            );
            assert!(
                fx.is_quiet() && fx.flow == Flow::Continue,
                "our own reply was held"
            );
            let reply = b"{}".to_vec();
            let fx = ex.on_response_body(
                reply.len(),
                true,
                &mut Buffered {
                    bytes: &reply,
                    host,
                },
            );
            assert!(
                fx.is_quiet() && fx.flow == Flow::Continue,
                "our own reply was held"
            );
        }
    } else {
        respond(ex, host, response, &mut out);
    }
    host.phase.set("log");
    let fx = ex.on_log(&mut props, &mut shared::MemoryStore::default());
    out.take(&fx);
    out
}

fn respond(ex: &mut Exchange, host: &Host, response: &Message<'_>, out: &mut Outcome) {
    let mut props = Props { host };
    let mut headers = Headers {
        pairs: response.headers.clone(),
        host,
    };
    let end = response.chunks.iter().all(|c| c.is_empty()) && !response.trailers;
    let fx = ex.on_response_headers(
        &mut headers,
        &mut props,
        &mut shared::MemoryStore::default(),
        end,
    );
    out.take(&fx);
    let mut answered = fx.reply.as_ref().map(|r| (r.status, r.code));
    if answered.is_some() || fx.reset {
        out.response_reply = answered;
        return;
    }
    assert_eq!(
        fx.flow,
        Flow::Continue,
        "response headers paused without a reply"
    );
    headers.apply(&fx.header_edits);
    let held = headers.has(HOLD_HEADER);
    out.client_headers = !held;
    let mut buffer: Vec<u8> = Vec::new();
    let last = response.chunks.len();
    for (i, chunk) in response.chunks.iter().enumerate() {
        if end {
            break;
        }
        if chunk.is_empty() && (i + 1 < last || response.trailers) {
            continue;
        }
        buffer.extend_from_slice(chunk);
        let eos = i + 1 == last && !response.trailers;
        let fx = ex.on_response_body(
            buffer.len(),
            eos,
            &mut Buffered {
                bytes: &buffer,
                host,
            },
        );
        out.take(&fx);
        answered = fx.reply.as_ref().map(|r| (r.status, r.code));
        if answered.is_some() || fx.reset {
            break;
        }
        if let Some(b) = &fx.body {
            buffer.splice(..b.len, b.bytes.iter().copied());
        }
        match fx.flow {
            Flow::Continue => out.client_body.append(&mut buffer),
            Flow::Pause => assert!(!eos, "the response ends paused, without a reply"),
        }
    }
    if response.trailers && answered.is_none() && !out.reset {
        let fx = ex.on_response_trailers(&mut Buffered {
            bytes: &buffer,
            host,
        });
        out.take(&fx);
        answered = fx.reply.as_ref().map(|r| (r.status, r.code));
        if answered.is_none() && !fx.reset {
            assert_eq!(
                fx.flow,
                Flow::Continue,
                "response trailers paused without a reply"
            );
            if let Some(b) = &fx.body {
                buffer.splice(..b.len, b.bytes.iter().copied());
            }
            out.client_body.append(&mut buffer);
        }
    }
    if answered.is_some() || out.reset {
        assert!(
            !out.client_headers && out.client_body.is_empty(),
            "a response was refused after its headers or body went to the client"
        );
    } else {
        out.client_headers = true;
    }
    out.response_reply = answered;
}

fn chunks<'a>(body: &'a [u8], sizes: &[usize]) -> Vec<&'a [u8]> {
    let mut out = Vec::new();
    let mut rest = body;
    for &size in sizes {
        let (head, tail) = rest.split_at(size.min(rest.len()));
        out.push(head);
        rest = tail;
    }
    out.push(rest);
    out
}

pub fn check(data: &[u8]) {
    let mut input = Input::new(data);
    let [a, b, c, d] = [input.byte(), input.byte(), input.byte(), input.byte()];
    let fail_at = (d >> 2 != 0).then_some(u32::from(d >> 2));
    let request_sizes: Vec<usize> = (0..input.byte() % 12)
        .map(|_| usize::from(input.byte()))
        .collect();
    let response_sizes: Vec<usize> = (0..input.byte() % 12)
        .map(|_| usize::from(input.byte()))
        .collect();
    let request_len = usize::from(input.u16());
    let request_body = input.take(request_len).to_vec();
    let fuzz_response = input.rest();

    let path = PATHS[usize::from(a & 7) % PATHS.len()];
    let method = if a & 8 != 0 { "POST" } else { "PUT" };
    // Which route's sealed document the service may send back.
    let route_index = match path.get(..3).map(str::to_ascii_lowercase).as_deref() {
        Some("/or") => Some(0),
        Some("/e/") => Some(1),
        _ => None,
    };
    let sealed = fixture(|f| route_index.map(|i| f.sealed[i].clone()).unwrap_or_default());
    let mut response_body = match (b >> 6) & 3 {
        0 | 1 => fuzz_response.to_vec(),
        2 => sealed.clone(),
        _ => {
            let mut s = sealed.clone();
            if !s.is_empty() {
                let at = usize::from(c) % s.len();
                s[at] ^= fuzz_response.first().copied().unwrap_or(1).max(1);
            }
            s
        }
    };
    if (b >> 6) & 3 == 1 {
        response_body = DOCUMENT.as_bytes().to_vec();
    }

    let header = |k: &str, v: &str| (k.to_string(), v.to_string());
    let mut request_headers = vec![
        header(":path", path),
        header(":method", method),
        header(":authority", "api.example.com"),
        header("x-request-id", "0f8fad5b-d9cb-469f-a165-70867728950e"),
    ];
    let request_type = CONTENT_TYPES[usize::from(b & 7)];
    if let Some(t) = request_type {
        request_headers.push(header("content-type", t));
    }
    let request_encoding = ENCODINGS[usize::from((b >> 3) & 3)];
    if let Some(e) = request_encoding {
        request_headers.push(header("content-encoding", e));
    }
    match (a >> 4) & 3 {
        1 => request_headers.push(header("content-length", &request_body.len().to_string())),
        2 => request_headers.push(header("content-length", "1")),
        3 => request_headers.push(header("content-length", "99999999")),
        _ => {}
    }
    if a & 0x40 != 0 {
        // A client forging the hold marker.
        request_headers.push(header(HOLD_HEADER, "1"));
    }
    let mut response_headers = vec![header(":status", if c & 1 == 0 { "200" } else { "503" })];
    let response_type = CONTENT_TYPES[usize::from((c >> 1) & 7)];
    if let Some(t) = response_type {
        response_headers.push(header("content-type", t));
    }
    if let Some(e) = ENCODINGS[usize::from((c >> 4) & 3)] {
        response_headers.push(header("content-encoding", e));
    }
    if c & 0x40 != 0 {
        response_headers.push(header("content-length", &response_body.len().to_string()));
    }
    if c & 0x80 != 0 {
        response_headers.push(header(HOLD_HEADER, "1"));
    }
    let request = Message {
        headers: request_headers.clone(),
        chunks: chunks(&request_body, &request_sizes),
        trailers: d & 1 != 0,
    };
    let response = Message {
        headers: response_headers.clone(),
        chunks: chunks(&response_body, &response_sizes),
        trailers: d & 2 != 0,
    };

    let host = Host {
        reads: Cell::new(0),
        fail_at,
        failed_in: Cell::new(None),
        phase: Cell::new("request"),
    };
    let mut ex = fixture(|f| f.guard.open());
    let out = run(&mut ex, &host, &request, &response);

    // 4. a failed host call ends the stream closed.
    if let Some(phase) = host.failed_in.get() {
        assert!(
            out.events.contains(&EventKind::HostCallFailed),
            "a host call failed in the {phase} phase without a host_call_failed event"
        );
        if phase != "log" {
            assert!(
                out.request_reply.is_some() || out.response_reply.is_some() || out.reset,
                "a host call failed in the {phase} phase and the stream went on"
            );
        }
        return;
    }

    // 2. refusals send nothing on.
    if out.request_reply.is_some() {
        assert!(
            !out.upstream_headers && out.upstream_body.is_empty(),
            "a refused request reached the upstream"
        );
    }

    // 3. fail closed.
    let route = ex.route().cloned();
    let whole_request = request.body();
    if out.request_reply.is_none() && !out.reset {
        check_forwarded(
            route.as_ref(),
            Direction::Request,
            request_type,
            &whole_request,
            &out.upstream_body,
        );
    }
    if out.request_reply.is_none() && out.response_reply.is_none() && !out.reset {
        check_forwarded(
            route.as_ref(),
            Direction::Response,
            response_type,
            &response.body(),
            &out.client_body,
        );
    }

    // 5. chunking does not matter.
    let single = Message {
        headers: request_headers,
        chunks: vec![&whole_request],
        trailers: request.trailers,
    };
    let whole_response = response.body();
    let single_response = Message {
        headers: response_headers,
        chunks: vec![&whole_response],
        trailers: response.trailers,
    };
    let again_host = Host {
        reads: Cell::new(0),
        fail_at: None,
        failed_in: Cell::new(None),
        phase: Cell::new("request"),
    };
    let mut again = fixture(|f| f.guard.open());
    let whole = run(&mut again, &again_host, &single, &single_response);
    assert_eq!(
        out.class(),
        whole.class(),
        "the outcome depends on the chunking"
    );
}

/// What left the filter in `dir` is what the route's rules allow.
fn check_forwarded(
    route: Option<&dpp_core::policy::Route>,
    dir: Direction,
    content_type: Option<&str>,
    original: &[u8],
    forwarded: &[u8],
) {
    let Some(route) = route else {
        assert!(forwarded == original, "an unprotected body was changed");
        return;
    };
    let Some(rules) = route.fields(dir) else {
        assert!(forwarded == original, "a body without rules was changed");
        return;
    };
    if !content_type.is_some_and(protect::is_json_content_type) {
        assert!(forwarded == original, "a body that is not JSON was changed");
        return;
    }
    let before = match serde_json::from_slice::<Value>(original) {
        Ok(v) => v,
        // Valid JSON that serde_json cannot hold (a number beyond f64,
        // `4444E44445`): the scanner accepts it, as it must. What a rule
        // selects in it is checked by the splice target; here it must at
        // least stay JSON.
        Err(e) if e.to_string().contains("number out of range") => {
            assert!(
                json::validate(forwarded).is_ok(),
                "a body with a number beyond f64 came out as something not JSON"
            );
            return;
        }
        Err(_) => {
            assert!(
                original.is_empty() && forwarded.is_empty(),
                "a body that is not JSON passed a route with rules"
            );
            return;
        }
    };
    if has_duplicate_members(original) {
        // serde_json's tree keeps one of them: compare what it can.
        return;
    }
    let after: Value = serde_json::from_slice(forwarded).expect("a forwarded JSON body parses");
    let selectors = route_selectors(&route.name);
    selected_positions_hold(&before, &after, &selectors, &mut Vec::<Seg>::new(), |v| {
        let envelope = v.as_str().is_some_and(|s| s.starts_with("dpg1."));
        match rules.action {
            FieldAction::Encrypt => envelope,
            FieldAction::Decrypt => !envelope,
        }
    });
}

fn route_selectors(route: &str) -> Vec<Selector> {
    let texts: Vec<String> = match route {
        "orders" => json::preset::selectors("sp-api-orders").unwrap_or_default(),
        _ => vec!["$..BuyerEmail".into(), "$.a[*]".into()],
    };
    texts
        .iter()
        .filter_map(|t| Selector::parse(t).ok())
        .collect()
}
