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

use crate::fixtures::log_key;
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

fn scrubber(keyed: bool) -> &'static Scrubber {
    static KEYED: OnceLock<Scrubber> = OnceLock::new();
    static UNKEYED: OnceLock<Scrubber> = OnceLock::new();
    if keyed {
        KEYED.get_or_init(|| Scrubber::new(Some(log_key().pseudonymizer()), PiiKeys::default()))
    } else {
        UNKEYED.get_or_init(|| Scrubber::new(None, PiiKeys::default()))
    }
}

pub fn check(data: &[u8]) {
    let mut input = Input::new(data);
    let op = input.byte();
    let scrubber = scrubber(op & 0x80 != 0);
    // Request targets and the URL-valued headers are logged the way the
    // scrubber re-encodes URLs, and read decoded.
    let url_header = |name: &str| {
        matches!(
            name.to_ascii_lowercase().as_str(),
            "referer" | "origin" | "location"
        )
    };
    let mut url_like = matches!(op & 0x7f, 32..=63);
    let (out, subject) = match op & 0x7f {
        0..=31 => {
            let text = crate::text(input.rest());
            (scrubber.text(&text), text)
        }
        32..=63 => {
            let target = crate::text(input.rest());
            (scrubber.url(&target), target)
        }
        64..=95 => {
            let name = HEADERS[input.byte() as usize % HEADERS.len()];
            url_like = url_header(name);
            let value = crate::text(input.rest());
            match scrubber.header(name, &value) {
                HeaderOutcome::Drop => return,
                HeaderOutcome::Value(v) => (v, value),
            }
        }
        96..=111 => {
            let name = crate::text(input.short(32));
            url_like = url_header(&name);
            let value = crate::text(input.rest());
            match scrubber.header(&name, &value) {
                HeaderOutcome::Drop => return,
                HeaderOutcome::Value(v) => (v, format!("{name} {value}")),
            }
        }
        _ => {
            let addr = crate::text(input.rest());
            let out = scrubber.client_address(&addr);
            assert!(is_token(&out), "a client address logged as {out:?}");
            return;
        }
    };
    if beyond_claimed_encodings(&subject) {
        return;
    }
    // A URL is logged percent-encoded where it was scrubbed: read it
    // decoded (as logged, escapes change what the detectors see around
    // them: `%20` glues to the digits after it, and an escape's hex digits
    // join the text beside it).
    let mut views = vec![("decoded", decode_fully(&out, false, ROUNDS))];
    if !url_like {
        views.push(("as logged", out.clone()));
    }
    // `+` is a space only in a query string (a path keeps it literal).
    if let (true, Some((_, query))) = (url_like, out.split_once('?')) {
        views.push((
            "query decoded, + as space",
            decode_fully(query, true, ROUNDS),
        ));
    }
    // Read undecoded, the escapes' own hex digits can shape something a
    // detector matches (`%2E::` reads as the IPv6 address `2e::`). The
    // scrubber avoids the digit runs it can (docs/logging.md), but what
    // counts as surviving PII in that view is a value the input held; a
    // shape made of escape digits carries nothing of the input.
    let subject_decoded = decode_fully(&subject, false, ROUNDS);
    let input_text = format!(
        "{subject}\n{subject_decoded}\n{}",
        decode_fully(&subject, true, ROUNDS)
    )
    .to_lowercase();
    for (view, shown) in views {
        let (masked, look_alikes) = mask_tokens(&shown, &subject, &subject_decoded);
        for d in detect::detect(&masked) {
            let text = masked.get(d.start..d.end).unwrap_or_default();
            // A look-alike left as text may also be the scrubber's own
            // pseudonym (libFuzzer learns them from comparisons): a match
            // that runs into one is the input's only if the input held it.
            let on_look_alike = look_alikes.iter().any(|&(s, e)| d.start < e && s < d.end);
            if (view == "as logged" || on_look_alike) && !input_text.contains(&text.to_lowercase())
            {
                continue;
            }
            panic!(
                "{:?} survives scrubbing ({view}): {text:?} in {out:?}",
                d.kind
            );
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
/// scrubber itself marks handled spans that way). Something shaped like a
/// pseudonym that the input already held is text, not a token: masking it
/// would cut a run such as `p:sshx-buyer-ema411.0.113.7` into a fake IPv4
/// address that neither the input nor a reader of the log has.
/// Also returns where the look-alikes left as text are in the result.
fn mask_tokens(s: &str, subject: &str, decoded: &str) -> (String, Vec<(usize, usize)>) {
    let forged = |t: &[u8]| {
        let t = String::from_utf8_lossy(t);
        subject.contains(t.as_ref()) || decoded.contains(t.as_ref())
    };
    let b = s.as_bytes();
    let mut out = String::with_capacity(s.len());
    let mut look_alikes = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let rest = &s[i..];
        if let Some(p) = PLACEHOLDERS.iter().find(|p| rest.starts_with(**p)) {
            out.push('\0');
            i += p.len();
        } else if let Some(t) = b.get(i..i + PSEUDONYM_LEN).filter(|t| is_pseudonym(t)) {
            if forged(t) {
                look_alikes.push((out.len(), out.len() + PSEUDONYM_LEN));
                out.push_str(&s[i..i + PSEUDONYM_LEN]);
            } else {
                out.push('\0');
            }
            i += PSEUDONYM_LEN;
        } else {
            let c = rest.chars().next().unwrap_or('\0');
            out.push(c);
            i += c.len_utf8();
        }
    }
    (out, look_alikes)
}
