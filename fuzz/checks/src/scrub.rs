//! The log scrubber: no PII a detector finds survives scrubbing.
//!
//! Input: one op byte (bit 7: with a log key, i.e. pseudonyms; the rest
//! picks the entry point: free text, a request target, a header with a
//! known or arbitrary name, a client address), then the text.
//!
//! Property: the scrubbed output, with the scrubber's own tokens masked
//! (placeholders such as `[email]`, pseudonyms `p:` + 16 characters), holds
//! nothing the detectors find, read percent-decoded the way the scrubber
//! reads its input (`+` as a space in query strings only), and, read as it
//! is, no detected value that the input held.
//! Inputs encoded more often than the
//! scrubber claims to see through (docs/logging.md: raw, once, twice) are
//! out of scope and skipped.

use std::sync::OnceLock;

use dpp_core::scrub::encoding::decode_fully;
use dpp_core::scrub::{detect, HeaderOutcome, PiiKeys};
use dpp_core::Scrubber;

use crate::fixtures::{log_key, other_log_key};
use crate::Input;

/// Header names with their own rules in the scrubber, and two without.
pub const HEADERS: &[&str] = &[
    "authorization",
    "proxy-authorization",
    "cookie",
    "set-cookie",
    "user-agent",
    "referer",
    "origin",
    "location",
    "x-forwarded-for",
    "x-buyer-email",
    "buyer-email",
    "x-amz-access-token",
    "x-request-id",
    "accept",
];

/// The scrubber's rounds of percent-decoding (scrub::DECODE_ROUNDS).
const ROUNDS: usize = 3;

/// The scrubber under test and a twin under another log key. Pseudonyms
/// the scrubber writes differ between the two; text the input held,
/// look-alikes of pseudonyms included, does not. That tells the scrubber's
/// tokens apart from forged ones without guessing (libFuzzer learns the
/// real pseudonyms from comparisons and feeds them back as input).
fn scrubbers(keyed: bool) -> (&'static Scrubber, &'static Scrubber) {
    static KEYED: OnceLock<(Scrubber, Scrubber)> = OnceLock::new();
    static UNKEYED: OnceLock<Scrubber> = OnceLock::new();
    if keyed {
        let (a, b) = KEYED.get_or_init(|| {
            (
                Scrubber::new(Some(log_key().pseudonymizer()), PiiKeys::default()),
                Scrubber::new(Some(other_log_key().pseudonymizer()), PiiKeys::default()),
            )
        });
        (a, b)
    } else {
        let s = UNKEYED.get_or_init(|| Scrubber::new(None, PiiKeys::default()));
        (s, s)
    }
}

/// Where the input goes in: each entry point of the scrubber.
enum Entry {
    Text(String),
    Url(String),
    Header {
        name: String,
        value: String,
        known: bool,
    },
}

impl Entry {
    /// The scrubbed output (None: the header is dropped) and the text it
    /// came from.
    fn scrub(&self, scrubber: &Scrubber) -> Option<(String, String)> {
        match self {
            Entry::Text(text) => Some((scrubber.text(text), text.clone())),
            Entry::Url(target) => Some((scrubber.url(target), target.clone())),
            Entry::Header { name, value, known } => match scrubber.header(name, value) {
                HeaderOutcome::Drop => None,
                HeaderOutcome::Value(v) if *known => Some((v, value.clone())),
                HeaderOutcome::Value(v) => Some((v, format!("{name} {value}"))),
            },
        }
    }
}

pub fn check(data: &[u8]) {
    let mut input = Input::new(data);
    let op = input.byte();
    let (scrubber, twin) = scrubbers(op & 0x80 != 0);
    // Request targets and the URL-valued headers are logged the way the
    // scrubber re-encodes URLs, and read decoded.
    let url_header = |name: &str| {
        matches!(
            name.to_ascii_lowercase().as_str(),
            "referer" | "origin" | "location"
        )
    };
    let entry = match op & 0x7f {
        0..=31 => Entry::Text(crate::text(input.rest())),
        32..=63 => Entry::Url(crate::text(input.rest())),
        64..=95 => {
            let name = HEADERS[input.byte() as usize % HEADERS.len()].to_string();
            let value = crate::text(input.rest());
            Entry::Header {
                name,
                value,
                known: true,
            }
        }
        96..=111 => {
            let name = crate::text(input.short(32));
            let value = crate::text(input.rest());
            Entry::Header {
                name,
                value,
                known: false,
            }
        }
        _ => {
            let addr = crate::text(input.rest());
            let out = scrubber.client_address(&addr);
            assert!(is_token(&out), "a client address logged as {out:?}");
            return;
        }
    };
    let url_like = match &entry {
        Entry::Url(_) => true,
        Entry::Header { name, .. } => url_header(name),
        Entry::Text(_) => false,
    };
    let Some((out, subject)) = entry.scrub(scrubber) else {
        return;
    };
    let twin_out = entry.scrub(twin).map(|(o, _)| o).unwrap_or_default();
    if beyond_claimed_encodings(&subject) {
        return;
    }
    // A URL is logged percent-encoded where it was scrubbed: read it
    // decoded (as logged, escapes change what the detectors see around
    // them: `%20` glues to the digits after it, and an escape's hex digits
    // join the text beside it).
    let mut views = vec![View::Decoded];
    if !url_like {
        views.push(View::AsLogged);
    }
    if url_like && out.contains('?') {
        views.push(View::QueryDecoded);
    }
    // Read undecoded, the escapes' own hex digits can shape something a
    // detector matches (`%2E::` reads as the IPv6 address `2e::`). The
    // scrubber avoids the digit runs it can (docs/logging.md), but what
    // counts as surviving PII in that view is a value the input held; a
    // shape made of escape digits carries nothing of the input.
    let input_text = format!(
        "{subject}\n{}\n{}",
        decode_fully(&subject, false, ROUNDS),
        decode_fully(&subject, true, ROUNDS)
    )
    .to_lowercase();
    for view in views {
        // Tokens hold no `%` or `+`, so decoding keeps the two outputs
        // aligned byte for byte outside them.
        let masked = mask_tokens(&view.read(&out), &view.read(&twin_out));
        for d in detect::detect(&masked) {
            let text = masked.get(d.start..d.end).unwrap_or_default();
            if view == View::AsLogged && !input_text.contains(&text.to_lowercase()) {
                continue;
            }
            panic!(
                "{:?} survives scrubbing ({}): {text:?} in {out:?}",
                d.kind,
                view.name()
            );
        }
    }
}

/// How a reader sees the output.
#[derive(Clone, Copy, PartialEq)]
enum View {
    /// Percent-decoded the way the scrubber reads its input.
    Decoded,
    /// As it is, escapes and all (not for URLs, which are read decoded).
    AsLogged,
    /// A URL's query string decoded with `+` as a space (a path keeps `+`
    /// literal).
    QueryDecoded,
}

impl View {
    fn read(self, s: &str) -> String {
        match self {
            View::Decoded => decode_fully(s, false, ROUNDS),
            View::AsLogged => s.to_string(),
            View::QueryDecoded => s
                .split_once('?')
                .map(|(_, q)| decode_fully(q, true, ROUNDS))
                .unwrap_or_default(),
        }
    }

    fn name(self) -> &'static str {
        match self {
            View::Decoded => "decoded",
            View::AsLogged => "as logged",
            View::QueryDecoded => "query decoded, + as space",
        }
    }
}

/// Encoded more often than the scrubber decodes.
fn beyond_claimed_encodings(text: &str) -> bool {
    [false, true]
        .iter()
        .any(|&plus| decode_fully(text, plus, ROUNDS) != decode_fully(text, plus, ROUNDS + 1))
}

const PLACEHOLDERS: &[&str] = &[
    "[redacted]",
    "[email]",
    "[phone]",
    "[card]",
    "[ip]",
    "[device]",
    "[principal]",
];

const PSEUDONYM_LEN: usize = 2 + 16;

fn is_pseudonym(b: &[u8]) -> bool {
    b.len() == PSEUDONYM_LEN
        && b.starts_with(b"p:")
        && b[2..]
            .iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_'))
}

fn is_token(s: &str) -> bool {
    PLACEHOLDERS.contains(&s) || is_pseudonym(s.as_bytes())
}

/// Replaces each token by one NUL byte, which no detector matches (the
/// scrubber itself marks handled spans that way). `twin` is the same input
/// scrubbed under the other log key: a pseudonym the scrubber wrote reads
/// differently there, while a look-alike the input held reads the same and
/// stays text (masking it would cut a run such as
/// `p:sshx-buyer-ema411.0.113.7` into a fake IPv4 address that neither the
/// input nor a reader of the log has). Placeholders are masked wherever
/// they are.
fn mask_tokens(s: &str, twin: &str) -> String {
    let b = s.as_bytes();
    let t = twin.as_bytes();
    // A window that differs between the two and is shaped like a pseudonym
    // in both starts a written token: a window starting in the text before
    // a token can reach no further than the token's `p` (a later `:` would
    // break the shape), and one starting inside a token's random part lies
    // within a token already masked from its start.
    let written = |i: usize| match (b.get(i..i + PSEUDONYM_LEN), t.get(i..i + PSEUDONYM_LEN)) {
        (Some(x), Some(y)) => x != y && is_pseudonym(x) && is_pseudonym(y),
        _ => false,
    };
    let mut out = String::with_capacity(s.len());
    let mut i = 0;
    while i < b.len() {
        let rest = &s[i..];
        if let Some(p) = PLACEHOLDERS.iter().find(|p| rest.starts_with(**p)) {
            out.push('\0');
            i += p.len();
        } else if written(i) {
            out.push('\0');
            i += PSEUDONYM_LEN;
        } else {
            let c = rest.chars().next().unwrap_or('\0');
            out.push(c);
            i += c.len_utf8();
        }
    }
    out
}
