//! The scrubber: removes PII from everything the plugin logs.
//!
//! Inputs are URL paths with query strings, header values and free text.
//! Each is percent-decoded (twice at most, so `%2540` is seen as `@`), then
//! two rules run on the decoded text:
//! 1. PII keys: the value after a PII key name (`BuyerEmail=...`,
//!    `"Phone": "..."`, a query parameter named `Name`) is replaced whole,
//!    whatever it looks like.
//! 2. Detectors ([`detect`]): e-mail addresses, phone numbers, card numbers
//!    (Luhn), IPv4 and IPv6 addresses anywhere in the remaining text.
//!
//! A replaced value becomes a keyed pseudonym (`p:` + 16 base64url chars,
//! see [`crate::logkey::Pseudonymizer`]) when a log key is configured and
//! pseudonyms are on, else a placeholder such as `[email]`. Card numbers are
//! always `[card]`: no investigation needs to correlate them and PCI DSS
//! forbids keeping them in logs in any recoverable form.
//!
//! Claimed encodings: raw text, percent-encoding (once or twice, either hex
//! case, `+` as space in query strings). Not claimed: base64, JSON `\u`
//! escapes, HTML entities, values split across two log inputs.

pub mod detect;
pub mod encoding;
mod headers;
pub use headers::HeaderOutcome;
pub mod keys;

use std::collections::HashMap;
use std::sync::Mutex;

use crate::logkey::Pseudonymizer;
pub use detect::{Detection, PiiKind};
use encoding::{decode_fully, percent_encode};
pub use keys::PiiKeys;

/// Decoding rounds: raw, encoded, double-encoded.
const DECODE_ROUNDS: usize = 3;

/// Placeholder for a PII key's value when no pseudonym can be made.
pub const REDACTED: &str = "[redacted]";

/// Scrubs text for logs. Cheap to share: build one per policy load.
#[derive(Debug, Clone, Default)]
pub struct Scrubber {
    pseudonyms: Option<Pseudonymizer>,
    keys: PiiKeys,
    recent: RecentPseudonyms,
}

/// Pseudonyms made lately, by normalised value. A record pseudonymizes the
/// client address and the user agent of every request, and one client sends
/// many requests: a keyed hash each time was most of what a record cost in
/// the VM (docs/performance.md). The pseudonym is a pure function of the
/// value under the loaded key, so a cached one is the same token. Bounded:
/// emptied when full, so memory stays flat whatever the traffic.
/// A `Mutex` so that a scrubber can be shared (the fuzz checks keep one in
/// a static); in the filter one worker's VM is single-threaded and the lock
/// is never contended.
#[derive(Debug, Default)]
struct RecentPseudonyms {
    tokens: Mutex<HashMap<String, String>>,
}

impl Clone for RecentPseudonyms {
    /// A clone starts empty: the tokens are a cache, not state.
    fn clone(&self) -> Self {
        RecentPseudonyms::default()
    }
}

impl RecentPseudonyms {
    const CAPACITY: usize = 256;
    /// Longer values (a whole header) are not worth keeping.
    const MAX_VALUE_LEN: usize = 256;
}

impl Scrubber {
    /// `pseudonyms`: `None` turns every detected value into a placeholder.
    pub fn new(pseudonyms: Option<Pseudonymizer>, keys: PiiKeys) -> Self {
        Scrubber {
            pseudonyms,
            keys,
            recent: RecentPseudonyms::default(),
        }
    }

    /// The keyed pseudonym of a normalised value, from the recent ones when
    /// it was made lately.
    fn pseudonym(&self, p: &Pseudonymizer, normalized: &str) -> String {
        let Ok(mut recent) = self.recent.tokens.try_lock() else {
            return p.pseudonym(normalized);
        };
        if let Some(token) = recent.get(normalized) {
            return token.clone();
        }
        let token = p.pseudonym(normalized);
        if normalized.len() <= RecentPseudonyms::MAX_VALUE_LEN {
            if recent.len() >= RecentPseudonyms::CAPACITY {
                recent.clear();
            }
            recent.insert(normalized.to_string(), token.clone());
        }
        token
    }

    /// The keyed pseudonymizer, when the log key is loaded.
    pub fn pseudonymizer(&self) -> Option<&Pseudonymizer> {
        self.pseudonyms.as_ref()
    }

    pub fn keys(&self) -> &PiiKeys {
        &self.keys
    }

    /// Token standing for a normalised value of `kind`.
    fn token(&self, kind: Option<PiiKind>, normalized: &str) -> String {
        match (kind, &self.pseudonyms) {
            (Some(PiiKind::Card), _) => PiiKind::Card.placeholder().to_string(),
            (_, Some(p)) => self.pseudonym(p, normalized),
            (Some(k), None) => k.placeholder().to_string(),
            (None, None) => REDACTED.to_string(),
        }
    }

    /// Token for a PII key's whole value. A value that is exactly one
    /// detected item (an e-mail) is normalised like that item, so
    /// `BuyerEmail=A%40x.com` and a header `a@x.com` meet on one pseudonym.
    fn value_token(&self, value: &str) -> String {
        let trimmed = value.trim();
        let found = detect::detect(trimmed);
        match found.as_slice() {
            [d] if d.start == 0 && d.end == trimmed.len() => {
                self.token(Some(d.kind), &d.normalized)
            }
            _ => self.token(None, trimmed),
        }
    }

    /// A pseudonym (or placeholder) for a client address such as Envoy's
    /// `source.address` (`1.2.3.4:5678`, `[::1]:80`): the port is dropped
    /// so that one client's connections meet on one token.
    pub fn client_address(&self, addr: &str) -> String {
        let host = if let Some(rest) = addr.strip_prefix('[') {
            rest.split(']').next().unwrap_or(rest)
        } else if addr.matches(':').count() == 1 {
            addr.split(':').next().unwrap_or(addr)
        } else {
            addr
        };
        let normalized = host
            .parse::<std::net::IpAddr>()
            .map_or_else(|_| host.to_string(), |ip| ip.to_string());
        self.token(Some(PiiKind::Ipv4), &normalized)
    }

    /// A pseudonym (or placeholder) for an authenticated principal (a
    /// certificate subject, a user id): identifies without naming.
    pub fn principal(&self, principal: &str) -> String {
        match &self.pseudonyms {
            Some(p) => self.pseudonym(p, principal),
            None => "[principal]".to_string(),
        }
    }

    /// Scrubs free text (a log message, an error string).
    pub fn text(&self, text: &str) -> String {
        // Nothing to decode (`%`), no `key=` / `key:`, nothing a detector
        // could match: kept as it is without the copies and scans. Route,
        // cluster and response-detail names of every record take this exit.
        if !text.bytes().any(|c| matches!(c, b'%' | b'=')) && !detect::may_hold_pii(text) {
            return text.to_string();
        }
        self.decoded(&decode_fully(text, false, DECODE_ROUNDS))
    }

    /// Scrubs already-decoded text: PII-key values first, then detectors.
    fn decoded(&self, text: &str) -> String {
        let keyed = self.key_value_spans(text);
        let mut spans: Vec<(usize, usize, String)> = keyed
            .iter()
            .map(|(s, e)| {
                (
                    *s,
                    *e,
                    self.value_token(text.get(*s..*e).unwrap_or_default()),
                )
            })
            .collect();
        for d in detect::detect_unclaimed(text, &keyed) {
            spans.push((d.start, d.end, self.token(Some(d.kind), &d.normalized)));
        }
        if spans.is_empty() {
            return text.to_string();
        }
        spans.sort_by_key(|s| s.0);
        let mut out = String::with_capacity(text.len());
        let mut pos = 0;
        for (s, e, token) in spans {
            out.push_str(text.get(pos..s).unwrap_or_default());
            out.push_str(&token);
            pos = e;
        }
        out.push_str(text.get(pos..).unwrap_or_default());
        out
    }

    /// Value spans following a PII key: `Key=v`, `Key: v`, `"Key":"v"`,
    /// `'Key' = 'v'`, and bracketed forms (`BuyerName[]=v`,
    /// `filter[BuyerName]=v`). A quoted value runs to its closing quote
    /// (escaped quotes `\"` included). A bare value runs to the next `&`,
    /// `;`, `,`, quote, closing bracket or line break, and across spaces up
    /// to the next `key=` / `key:`: `BuyerName=Jane%20Doe` decodes to two
    /// words, and both are the value.
    fn key_value_spans(&self, text: &str) -> Vec<(usize, usize)> {
        let b = text.as_bytes();
        let at = |i: usize| b.get(i).copied().unwrap_or(0);
        let is_word = |c: u8| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'-' | b'.');
        let word_end = |mut r: usize| {
            while is_word(at(r)) {
                r += 1;
            }
            r
        };
        // Past `[...]` and `]` after a key name: `Name[]`, `[Name]`, `Name[0]`.
        let past_brackets = |mut j: usize| {
            loop {
                match at(j) {
                    b']' => j += 1,
                    b'[' => {
                        let close = (j + 1..b.len().min(j + 65)).find(|&k| at(k) == b']');
                        match close {
                            Some(k) if (j + 1..k).all(|m| is_word(at(m))) => j = k + 1,
                            _ => break,
                        }
                    }
                    _ => break,
                }
            }
            j
        };
        // At `j` (after spaces): does a `key=` or `key:` start here?
        let key_starts = |j: usize| {
            let r = word_end(j);
            let k = past_brackets(r);
            r > j && matches!(at(k), b'=' | b':')
        };
        let mut spans = Vec::new();
        let mut i = 0;
        while i < b.len() {
            if !is_word(at(i)) || (i > 0 && is_word(at(i - 1))) {
                i += 1;
                continue;
            }
            let r = word_end(i);
            let mut j = past_brackets(r);
            if matches!(at(j), b'"' | b'\'') {
                j += 1;
            }
            while at(j) == b' ' {
                j += 1;
            }
            // Only a word followed by `=` or `:` can be a key; the name
            // lookup (which normalises) runs for those alone.
            let word = text.get(i..r).unwrap_or_default();
            if !matches!(at(j), b'=' | b':') || !self.keys.contains_key_expr(word) {
                i = r;
                continue;
            }
            j += 1;
            while at(j) == b' ' {
                j += 1;
            }
            let (s, e) = match at(j) {
                q @ (b'"' | b'\'') => {
                    let s = j + 1;
                    let mut e = s;
                    while e < b.len() && at(e) != q {
                        // A backslash escapes the next byte (`\"` in JSON).
                        e += if at(e) == b'\\' { 2 } else { 1 };
                    }
                    (s, e.min(b.len()))
                }
                _ => {
                    let mut e = j;
                    while e < b.len() {
                        let c = at(e);
                        if matches!(c, b'&' | b';' | b',' | b'"' | b'\'' | b'}' | b']')
                            || matches!(c, b'\n' | b'\r')
                        {
                            break;
                        }
                        if c.is_ascii_whitespace() {
                            // The same whitespace as `c` (line breaks ended
                            // the value above), so `w` moves past `e`: a form
                            // feed once looped here for ever, hanging the
                            // worker on a `?name=a%0Cb` query (fuzz).
                            let mut w = e;
                            while at(w).is_ascii_whitespace() && !matches!(at(w), b'\n' | b'\r') {
                                w += 1;
                            }
                            if w >= b.len() || key_starts(w) {
                                break;
                            }
                            e = w;
                            continue;
                        }
                        e += 1;
                    }
                    (j, e)
                }
            };
            if e > s {
                spans.push((s, e));
            }
            i = e.max(r);
        }
        spans
    }

    /// One URL component: kept byte for byte when clean, else decoded,
    /// scrubbed and re-encoded.
    fn component(&self, raw: &str, plus_is_space: bool) -> String {
        // Nothing to decode, no `key=value`, nothing a detector could
        // match: most path segments take this exit.
        if !raw.bytes().any(|c| matches!(c, b'%' | b'+' | b'=')) && !detect::may_hold_pii(raw) {
            return raw.to_string();
        }
        let decoded = decode_fully(raw, plus_is_space, DECODE_ROUNDS);
        let scrubbed = self.decoded(&decoded);
        if scrubbed != decoded {
            return percent_encode(&scrubbed);
        }
        // Many clients send `+` unencoded (`?phone=+4930...`): read it
        // both ways and scrub if either reading holds PII.
        if plus_is_space && raw.contains('+') {
            let literal = decode_fully(raw, false, DECODE_ROUNDS);
            let scrubbed = self.decoded(&literal);
            if scrubbed != literal {
                return percent_encode(&scrubbed);
            }
        }
        raw.to_string()
    }

    /// Scrubs a request target (`:path` with its query string). The
    /// fragment, which clients should not send, is dropped.
    pub fn url(&self, target: &str) -> String {
        let target = target.split('#').next().unwrap_or_default();
        let (path, query) = match target.split_once('?') {
            Some((p, q)) => (p, Some(q)),
            None => (target, None),
        };
        let mut out = path
            .split('/')
            .map(|seg| self.component(seg, false))
            .collect::<Vec<_>>()
            .join("/");
        if let Some(query) = query {
            out.push('?');
            let params: Vec<String> = query
                .split('&')
                .map(|param| self.query_param(param))
                .collect();
            out.push_str(&params.join("&"));
        }
        out
    }

    fn query_param(&self, param: &str) -> String {
        let Some((key, value)) = param.split_once('=') else {
            return self.component(param, true);
        };
        let key_decoded = decode_fully(key, true, DECODE_ROUNDS);
        let key_out = self.component(key, true);
        if self.keys.contains_key_expr(key_decoded.trim()) {
            if value.is_empty() {
                return format!("{key_out}=");
            }
            let token = self.value_token(&decode_fully(value, true, DECODE_ROUNDS));
            return format!("{key_out}={token}");
        }
        format!("{key_out}={}", self.component(value, true))
    }
}

#[cfg(test)]
mod tests;
