//! Path normalisation and route matching on it: no spelling of a path can
//! reach a protected handler while the policy decides on another path.
//!
//! Input: one flags byte (bit 0: `requests.non_normal_path: normalize`
//! instead of `reject`), then the request target (`:path`, query allowed).
//!
//! Properties:
//! 1. a normal form is in normal form: starts with `/`, no empty, `.` or
//!    `..` segment, escapes only of reserved characters and in upper-case
//!    hex, and normalising it again changes nothing;
//! 2. the ways services read paths agree on a normal form: decoding once
//!    or twice, removing dot segments before or after decoding, merging
//!    slashes first, `\` as `/`, `;params` stripped, trailing dots dropped
//!    (ASCII case aside, which route matching ignores);
//! 3. a spelling cannot change the route: a target the policy lets through
//!    gets the route of its normal form;
//! 4. what the service receives (the target, or its normal form when the
//!    filter rewrites `:path`) never passes unprotected if any reader
//!    resolves it under a protected prefix;
//! 5. under `reject`, a spelling that is not the normal form is refused.

use std::sync::OnceLock;

use dpp_core::path;
use dpp_core::{Policy, RequestDecision, RequestFacts};

use crate::Input;

/// Routes of every match kind; unmatched requests pass (the weakest mode,
/// where a dodged route would show).
fn policy(normalize: bool) -> &'static Policy {
    static REJECT: OnceLock<Policy> = OnceLock::new();
    static NORMALIZE: OnceLock<Policy> = OnceLock::new();
    let make = |mode: &str| {
        let doc = format!(
            r#"{{"version": 1, "requests": {{"non_normal_path": "{mode}"}}, "routes": [
              {{"name": "orders", "match": {{"path": {{"prefix": "/orders/"}}}}}},
              {{"name": "buyer", "match": {{"path": {{"exact": "/buyer/info"}}}}}},
              {{"name": "items", "match": {{"path": {{"regex": "/items/[0-9]+"}}}}}},
              {{"name": "killed", "match": {{"path": {{"prefix": "/mws/"}}}}, "kill_switch": true}}
            ]}}"#
        );
        Policy::from_json(doc.as_bytes()).expect("fixture policy parses")
    };
    if normalize {
        NORMALIZE.get_or_init(|| make("normalize"))
    } else {
        REJECT.get_or_init(|| make("reject"))
    }
}

/// Prefixes of protected routes, as the readers below resolve paths.
const PROTECTED_PREFIXES: &[&str] = &["/orders/", "/mws/"];

pub fn check(data: &[u8]) {
    let mut input = Input::new(data);
    let normalize_mode = input.byte() & 1 != 0;
    let target = crate::text(input.rest());
    let (raw, query) = path::split_query(&target);
    let normal = path::normalize(raw);

    if let Ok(n) = &normal {
        let n = n.as_str();
        assert_normal_form(n);
        let read = read_decoded(n).to_ascii_lowercase();
        for (name, reader) in READERS {
            assert_eq!(
                reader(n).to_ascii_lowercase(),
                read,
                "reader `{name}` reads the normal form {n:?} differently"
            );
        }
    }

    let policy = policy(normalize_mode);
    let decide = |p: &str| {
        let facts = RequestFacts {
            host: "api.example.com",
            path: p,
            method: "GET",
            route_name: None,
        };
        match policy.decide_request(&facts) {
            RequestDecision::Unprotected { .. } => Some(None),
            RequestDecision::Proceed { route, .. } => Some(Some(route.name.clone())),
            // Only the kill switch refuses with a route, which it covers.
            RequestDecision::Refuse { route, .. } => route.map(|r| Some(r.name.clone())),
        }
    };
    let Some(chosen) = decide(&target) else {
        return; // refused: nothing reaches the service
    };
    let n = normal
        .as_ref()
        .expect("a target the policy lets through has a normal form");
    if !normalize_mode {
        assert!(
            !n.changed(),
            "under reject, {raw:?} passed without being in normal form ({:?})",
            n.as_str()
        );
    }
    let normal_target = format!("{}{query}", n.as_str());
    assert_eq!(
        decide(&normal_target),
        Some(chosen.clone()),
        "{raw:?} and its normal form {:?} are routed differently",
        n.as_str()
    );
    if chosen.is_none() {
        let forwarded = if n.changed() { n.as_str() } else { raw };
        for (name, reader) in READERS {
            let read = reader(forwarded).to_ascii_lowercase();
            for prefix in PROTECTED_PREFIXES {
                assert!(
                    !read.starts_with(prefix),
                    "{raw:?} passed unprotected; reader `{name}` reads {forwarded:?} as {read:?}"
                );
            }
        }
    }
}

fn assert_normal_form(n: &str) {
    assert!(
        n.starts_with('/'),
        "normal form {n:?} does not start with /"
    );
    let segments: Vec<&str> = n[1..].split('/').collect();
    for (i, seg) in segments.iter().enumerate() {
        assert!(
            !seg.is_empty() || i == segments.len() - 1,
            "normal form {n:?} has an empty segment"
        );
        assert!(
            *seg != "." && *seg != "..",
            "normal form {n:?} has a dot segment"
        );
    }
    let b = n.as_bytes();
    for (i, _) in n.match_indices('%') {
        let hex = b.get(i + 1..i + 3).expect("an escape has two hex digits");
        assert!(
            hex.iter()
                .all(|c| c.is_ascii_digit() || (b'A'..=b'F').contains(c)),
            "normal form {n:?} has an escape that is not upper-case hex"
        );
        let value = u8::from_str_radix(std::str::from_utf8(hex).unwrap_or("00"), 16).unwrap_or(0);
        assert!(
            !(value.is_ascii_alphanumeric() || matches!(value, b'-' | b'.' | b'_' | b'~')),
            "normal form {n:?} escapes an unreserved character"
        );
    }
    let again = path::normalize(n).expect("a normal form normalises");
    assert_eq!(again.as_str(), n, "normalising {n:?} again changes it");
    assert!(!again.changed(), "a normal form counts as changed");
}

type Reader = fn(&str) -> String;

/// How services read a path (independent of `core::path`).
const READERS: &[(&str, Reader)] = &[
    ("decode, resolve dots", read_decoded),
    ("decode twice", |p| resolve(&decode(&decode(p)))),
    ("resolve dots, decode, resolve", |p| {
        resolve(&decode(&resolve(p)))
    }),
    ("backslash is a separator", |p| {
        read_decoded(&p.replace('\\', "/")).replace('\\', "/")
    }),
    ("path parameters stripped", |p| {
        let decoded = decode(p);
        let stripped: Vec<&str> = decoded
            .split('/')
            .map(|s| s.split(';').next().unwrap_or(""))
            .collect();
        resolve(&stripped.join("/"))
    }),
    ("trailing dots and spaces dropped", |p| {
        let decoded = decode(p);
        let trimmed: Vec<&str> = decoded
            .split('/')
            .map(|s| {
                if s == "." || s == ".." {
                    s
                } else {
                    s.trim_end_matches(['.', ' '])
                }
            })
            .collect();
        resolve(&trimmed.join("/"))
    }),
    ("slashes merged, then dots", |p| {
        let decoded = decode(p);
        let mut merged = String::with_capacity(decoded.len());
        for c in decoded.chars() {
            if !(c == '/' && merged.ends_with('/')) {
                merged.push(c);
            }
        }
        resolve(&merged)
    }),
];

fn read_decoded(p: &str) -> String {
    resolve(&decode(p))
}

/// Percent-decodes every escape once (invalid ones stay as they are).
fn decode(p: &str) -> String {
    let b = p.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = |j: usize| b.get(j).and_then(|c| (*c as char).to_digit(16));
        if b[i] == b'%' {
            if let (Some(h), Some(l)) = (hex(i + 1), hex(i + 2)) {
                out.push((h * 16 + l) as u8);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// RFC 3986 section 5.2.4 (empty segments kept, as the RFC does), then
/// runs of `/` merged (as Envoy's `merge_slashes` after `normalize_path`).
fn resolve(p: &str) -> String {
    let mut out: Vec<&str> = Vec::new();
    let segments: Vec<&str> = p.strip_prefix('/').unwrap_or(p).split('/').collect();
    let last = segments.len().saturating_sub(1);
    for (i, seg) in segments.iter().enumerate() {
        match *seg {
            "." | ".." => {
                if *seg == ".." {
                    out.pop();
                }
                if i == last {
                    out.push("");
                }
            }
            s => out.push(s),
        }
    }
    let mut path = String::from("/");
    for (i, seg) in out.iter().enumerate() {
        if i > 0 && !path.ends_with('/') {
            path.push('/');
        }
        path.push_str(seg);
    }
    path
}
