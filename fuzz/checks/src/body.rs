//! Protected bodies arriving in arbitrary chunks, from the headers to the
//! bytes that leave the filter.
//!
//! This models the per-direction body handling the filter runs today
//! (`protect::plan` on the headers, the limit checked on every chunk,
//! `protect::rewrite` at the end of the stream) on top of the core
//! functions that decide. When the per-stream state machine lands in
//! core, this target drives it instead of the model.
//!
//! Input: flags (policy, direction, content type, content encoding,
//! content length), a chunk count and sizes, then the body.
//!
//! Properties:
//! 1. fail closed: a forwarded JSON body carries an envelope at every
//!    position an encrypt rule selects (serde_json's tree, matched
//!    independently), and no envelope where a decrypt rule selects;
//! 2. a refusal is the documented one for what was wrong (limit, type,
//!    encoding, JSON), with the documented status;
//! 3. the outcome does not depend on how the body was chunked.

use std::sync::OnceLock;

use dpp_core::json::selector::Selector;
use dpp_core::policy::{Direction, FieldAction, NonJson, Route};
use dpp_core::protect::{self, BodyFailure, BodyHeaders, BodyPlan};
use dpp_core::Policy;
use serde_json::Value;

use crate::fixtures::keyring;
use crate::splice::{ambiguous_member, selected_positions_hold, Seg};
use crate::Input;

/// Two routes: the SP-API preset with a small limit, and explicit
/// selectors with deterministic mode, blind indexes and `non_json: pass`.
const POLICY: &str = r#"{
  "version": 1,
  "keys": {"inline": "k1=AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8", "allow_inline_keys_for_testing_only": true},
  "routes": [
    {"name": "preset", "match": {"path": {"prefix": "/p/"}},
     "encrypt": [{"direction": "request", "preset": "sp-api-orders", "context": "c"}],
     "decrypt": [{"direction": "response", "preset": "sp-api-orders", "context": "c"}],
     "body": {"max_bytes": 600}},
    {"name": "explicit", "match": {"path": {"prefix": "/e/"}},
     "encrypt": [{"direction": "request", "selectors": ["$..BuyerEmail", "$.a[*]"], "mode": "deterministic", "blind_index": true}],
     "decrypt": [{"direction": "response", "selectors": ["$..BuyerEmail", "$.a[*]"]}],
     "body": {"max_bytes": 4096, "non_json": "pass"}}
  ]
}"#;

fn policy() -> &'static Policy {
    static P: OnceLock<Policy> = OnceLock::new();
    P.get_or_init(|| Policy::from_json(POLICY.as_bytes()).expect("fixture policy parses"))
}

const CONTENT_TYPES: &[Option<&str>] = &[
    Some("application/json"),
    Some("application/json; charset=utf-8"),
    Some("application/vnd.api+json"),
    Some("APPLICATION/JSON"),
    Some("text/plain"),
    None,
    Some("application/jsonx"),
    Some(""),
];

const CONTENT_ENCODINGS: &[Option<&str>] =
    &[None, Some("identity"), Some("gzip"), Some(" Identity ")];

#[derive(Debug, PartialEq)]
enum Outcome {
    Refused(BodyFailure),
    /// Forwarded as it came (`None`) or rewritten.
    Forwarded(Option<Vec<u8>>),
}

fn process(route: &Route, dir: Direction, headers: &BodyHeaders<'_>, chunks: &[&[u8]]) -> Outcome {
    let total: usize = chunks.iter().map(|c| c.len()).sum();
    if route.fields(dir).is_none() || total == 0 {
        // Headers with end of stream: no body to protect.
        return Outcome::Forwarded(None);
    }
    match protect::plan(&route.body, headers) {
        Err(f) => return Outcome::Refused(f),
        Ok(BodyPlan::Pass) => return Outcome::Forwarded(None),
        Ok(BodyPlan::Buffer) => {}
    }
    let mut buffered = Vec::new();
    for chunk in chunks {
        buffered.extend_from_slice(chunk);
        if buffered.len() > route.body.max_bytes {
            return Outcome::Refused(BodyFailure::TooLarge);
        }
    }
    let Some(rules) = route.fields(dir) else {
        return Outcome::Refused(BodyFailure::Seal);
    };
    match protect::rewrite(rules, keyring(), &buffered) {
        Ok(out) => Outcome::Forwarded(out),
        Err(f) => Outcome::Refused(f),
    }
}

pub fn check(data: &[u8]) {
    let mut input = Input::new(data);
    let flags = input.byte();
    let more = input.byte();
    let route = &policy().routes[usize::from(flags & 1)];
    let dir = if flags & 2 == 0 {
        Direction::Request
    } else {
        Direction::Response
    };
    let content_type = CONTENT_TYPES[usize::from(flags >> 2) % CONTENT_TYPES.len()];
    let content_encoding = CONTENT_ENCODINGS[usize::from(flags >> 5) % CONTENT_ENCODINGS.len()];
    let sizes: Vec<usize> = (0..input.byte() % 16)
        .map(|_| usize::from(input.byte()))
        .collect();
    let body = input.rest();
    let declared = body.len().to_string();
    let content_length = match more % 4 {
        0 => None,
        1 => Some(declared.as_str()),
        2 => Some("1"),
        _ => Some("99999999999999999999999"),
    };
    let headers = BodyHeaders {
        content_type,
        content_encoding,
        content_length,
    };

    let mut chunks = Vec::new();
    let mut rest = body;
    for size in sizes {
        let (head, tail) = rest.split_at(size.min(rest.len()));
        chunks.push(head);
        rest = tail;
    }
    chunks.push(rest);

    let outcome = process(route, dir, &headers, &chunks);
    assert_eq!(
        outcome_class(&outcome),
        outcome_class(&process(route, dir, &headers, &[body])),
        "the outcome depends on the chunking"
    );
    let Some(rules) = route.fields(dir) else {
        return;
    };
    let json_type = content_type.is_some_and(protect::is_json_content_type);
    match outcome {
        Outcome::Refused(f) => {
            let why_ok = match f {
                BodyFailure::TooLarge => {
                    body.len() > route.body.max_bytes
                        || content_length
                            .and_then(|l| l.parse::<u64>().ok())
                            .is_some_and(|l| l > route.body.max_bytes as u64)
                }
                BodyFailure::ContentEncoding => content_encoding.is_some_and(|e| {
                    !e.trim().is_empty() && !e.trim().eq_ignore_ascii_case("identity")
                }),
                BodyFailure::NotJson => !json_type && route.body.non_json == NonJson::Reject,
                BodyFailure::Malformed => serde_json::from_slice::<Value>(body).is_err(),
                BodyFailure::AmbiguousMember => serde_json::from_slice::<Value>(body)
                    .map_or(true, |v| ambiguous_member(&v, &route_selectors(route, dir))),
                BodyFailure::MissingContextField => false,
                BodyFailure::Envelope(_) => rules.action == FieldAction::Decrypt,
                BodyFailure::Seal => false,
            };
            assert!(why_ok, "refused with {f:?} without that reason");
            let status = f.status(dir);
            assert!(
                matches!(
                    (dir, status),
                    (Direction::Response, 502) | (Direction::Request, 400 | 413 | 415 | 502)
                ),
                "{f:?} answered {status}"
            );
        }
        Outcome::Forwarded(out) => {
            if !json_type {
                assert!(
                    route.body.non_json == NonJson::Pass || body.is_empty(),
                    "a non-JSON body passed a route that rejects non-JSON"
                );
                return;
            }
            let Ok(original) = serde_json::from_slice::<Value>(body) else {
                return;
            };
            assert!(
                !ambiguous_member(&original, &route_selectors(route, dir)) || has_duplicates(body),
                "a member that case-folds to a selected name passed"
            );
            let sent = out.as_deref().unwrap_or(body);
            let sent: Value = serde_json::from_slice(sent).expect("a forwarded JSON body parses");
            let selectors = route_selectors(route, dir);
            selected_positions_hold(&original, &sent, &selectors, &mut Vec::<Seg>::new(), |v| {
                let envelope = v.as_str().is_some_and(|s| s.starts_with("dpg1."));
                match rules.action {
                    FieldAction::Encrypt => envelope,
                    FieldAction::Decrypt => !envelope,
                }
            });
        }
    }
}

fn has_duplicates(body: &[u8]) -> bool {
    crate::splice::has_duplicate_members(body)
}

fn outcome_class(o: &Outcome) -> Result<bool, BodyFailure> {
    match o {
        Outcome::Refused(f) => Err(*f),
        Outcome::Forwarded(out) => Ok(out.is_some()),
    }
}

/// The selectors of the fixture policy's routes, parsed again for the
/// reference matcher.
fn route_selectors(route: &Route, dir: Direction) -> Vec<Selector> {
    let texts: Vec<String> = match (route.name.as_str(), dir) {
        ("preset", _) => dpp_core::json::preset::selectors("sp-api-orders").unwrap_or_default(),
        _ => vec!["$..BuyerEmail".into(), "$.a[*]".into()],
    };
    texts
        .iter()
        .filter_map(|t| Selector::parse(t).ok())
        .collect()
}
