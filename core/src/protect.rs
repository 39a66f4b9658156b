//! Protecting bodies: the checks on headers, and the rewrite of a complete
//! body under a route's field rules. The filter calls these two functions
//! and turns a [`BodyFailure`] into a local reply and a security event.
//!
//! Status codes (documented in docs/policy.md):
//!
//! | failure                         | request | response |
//! |---------------------------------|---------|----------|
//! | body over `body.max_bytes`      | 413     | 502      |
//! | not JSON (`non_json: reject`)   | 415     | 502      |
//! | Content-Encoding not identity   | 415     | 502      |
//! | malformed JSON                  | 400     | 502      |
//! | case-folded selected name       | 400     | 502      |
//! | record lacks a context field    | 400     | 502      |
//! | envelope refused (decrypt)      | 502     | 502      |
//! | sealing failed (encrypt)        | 500     | 502      |

use crate::crypto::envelope::{self, Field, FieldDigest, Scratch, SealOptions};
use crate::crypto::{EnvelopeError, Keyring};
use crate::decision::LocalReply;
use crate::events::{EventKind, SecurityEvent};
use crate::json::{self, SpliceError};
use crate::policy::{BodyOptions, Direction, FieldAction, FieldRules, NonJson};

/// Why a protected body was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyFailure {
    TooLarge,
    NotJson,
    ContentEncoding,
    Malformed,
    /// A member name equals a selected name under case folding without
    /// being equal to it (or a context field appears twice).
    AmbiguousMember,
    /// A value was selected in a record that lacks a context field.
    MissingContextField,
    Envelope(EnvelopeError),
    Seal,
}

impl BodyFailure {
    pub fn code(self) -> &'static str {
        match self {
            BodyFailure::TooLarge => "body_too_large",
            BodyFailure::NotJson => "unsupported_content_type",
            BodyFailure::ContentEncoding => "unsupported_content_encoding",
            BodyFailure::Malformed => "malformed_json",
            BodyFailure::AmbiguousMember => "ambiguous_member",
            BodyFailure::MissingContextField => "missing_context_field",
            BodyFailure::Envelope(_) => "envelope_rejected",
            BodyFailure::Seal => "encryption_failed",
        }
    }

    pub fn status(self, dir: Direction) -> u32 {
        match (dir, self) {
            // A response we cannot vouch for is the upstream's fault.
            (Direction::Response, _) => 502,
            (Direction::Request, BodyFailure::TooLarge) => 413,
            (Direction::Request, BodyFailure::NotJson | BodyFailure::ContentEncoding) => 415,
            (
                Direction::Request,
                BodyFailure::Malformed
                | BodyFailure::AmbiguousMember
                | BodyFailure::MissingContextField,
            ) => 400,
            // The contract: an envelope that does not open is a
            // bad gateway whichever way it travels.
            (Direction::Request, BodyFailure::Envelope(_)) => 502,
            (Direction::Request, BodyFailure::Seal) => 500,
        }
    }

    pub fn event_kind(self) -> EventKind {
        match self {
            BodyFailure::TooLarge => EventKind::BodyTooLarge,
            BodyFailure::NotJson => EventKind::UnsupportedContentType,
            BodyFailure::ContentEncoding => EventKind::UnsupportedContentEncoding,
            BodyFailure::Malformed => EventKind::MalformedBody,
            BodyFailure::AmbiguousMember => EventKind::AmbiguousMember,
            BodyFailure::MissingContextField => EventKind::ContextFieldMissing,
            BodyFailure::Envelope(_) => EventKind::EnvelopeRejected,
            BodyFailure::Seal => EventKind::EncryptionFailed,
        }
    }

    fn message(self, dir: Direction) -> &'static str {
        match (self, dir) {
            (BodyFailure::TooLarge, _) => "the body is larger than this route allows",
            (BodyFailure::NotJson, _) => "this route only carries JSON bodies",
            (BodyFailure::ContentEncoding, _) => {
                "compressed bodies cannot be inspected on this route"
            }
            (BodyFailure::Malformed, _) => "the body is not valid JSON",
            (BodyFailure::AmbiguousMember, _) => {
                "a member name differs from a protected field's name only by case"
            }
            (BodyFailure::MissingContextField, _) => {
                "a protected field's record lacks a field its envelope is bound to"
            }
            (BodyFailure::Envelope(_), _) => "a protected field could not be decrypted",
            (BodyFailure::Seal, _) => "a protected field could not be encrypted",
        }
    }

    /// The local reply and the event for this failure. Neither contains
    /// request data: codes and the route name only.
    pub fn reply(self, dir: Direction, route: &str, method: &str) -> (LocalReply, SecurityEvent) {
        let reply = LocalReply::json(self.status(dir), self.code(), self.message(dir));
        let detail = match self {
            BodyFailure::Envelope(e) => format!("{}: {}", dir.name(), e.code()),
            _ => dir.name().to_string(),
        };
        let event = SecurityEvent::new(self.event_kind())
            .route(route)
            .method(method)
            .detail(detail);
        (reply, event)
    }
}

/// The headers of a body under field rules, as the filter reads them.
#[derive(Debug, Default, Clone, Copy)]
pub struct BodyHeaders<'a> {
    pub content_type: Option<&'a str>,
    pub content_encoding: Option<&'a str>,
    pub content_length: Option<&'a str>,
}

/// What to do with a body after its headers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyPlan {
    /// Buffer it and call [`rewrite`] at the end of the stream.
    Buffer,
    /// Let it pass untouched (`non_json: pass` with a non-JSON type).
    Pass,
}

/// `application/json` or `application/<anything>+json`, parameters allowed.
pub fn is_json_content_type(value: &str) -> bool {
    let essence = value.split(';').next().unwrap_or_default().trim();
    let Some((kind, sub)) = essence.split_once('/') else {
        return false;
    };
    kind.eq_ignore_ascii_case("application")
        && (sub.eq_ignore_ascii_case("json")
            || sub
                .len()
                .checked_sub(5)
                .and_then(|n| sub.get(n..))
                .is_some_and(|tail| tail.eq_ignore_ascii_case("+json")))
}

/// Decides from the headers, before any body byte is seen.
pub fn plan(opts: &BodyOptions, headers: &BodyHeaders<'_>) -> Result<BodyPlan, BodyFailure> {
    if let Some(enc) = headers.content_encoding {
        if !enc.trim().is_empty() && !enc.trim().eq_ignore_ascii_case("identity") {
            return Err(BodyFailure::ContentEncoding);
        }
    }
    if let Some(len) = headers.content_length {
        // An unparsable length is Envoy's business; a parsable one over
        // the limit is refused before buffering anything.
        if len
            .trim()
            .parse::<u64>()
            .is_ok_and(|n| n > opts.max_bytes as u64)
        {
            return Err(BodyFailure::TooLarge);
        }
    }
    match headers.content_type {
        Some(ct) if is_json_content_type(ct) => Ok(BodyPlan::Buffer),
        _ => match opts.non_json {
            NonJson::Reject => Err(BodyFailure::NotJson),
            NonJson::Pass => Ok(BodyPlan::Pass),
        },
    }
}

/// Rewrites a complete body. `Ok(None)`: nothing selected, forward as is.
pub fn rewrite(
    rules: &FieldRules,
    keyring: &Keyring,
    body: &[u8],
) -> Result<Option<Vec<u8>>, BodyFailure> {
    rewrite_counted(rules, keyring, body).map(|(body, _)| body)
}

/// [`rewrite`], also returning how many fields were sealed or opened (for
/// the access record). Every decrypt rule reveals (no need-to-know).
pub fn rewrite_counted(
    rules: &FieldRules,
    keyring: &Keyring,
    body: &[u8],
) -> Result<(Option<Vec<u8>>, u32), BodyFailure> {
    rewrite_for(rules, keyring, body, |_| true, &mut |_| {}).map(|(body, n)| (body, n.processed))
}

/// What one rewrite did to the selected fields.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FieldCounts {
    /// Sealed (encrypt) or opened for the caller (decrypt).
    pub processed: u32,
    /// Decrypt: envelope checked and kept (`otherwise: keep`).
    pub kept: u32,
    /// Decrypt: value replaced by `"[redacted]"` (`otherwise: redact`).
    pub redacted: u32,
}

/// [`rewrite`] with field-level need-to-know: `reveal(rule)` says whether
/// the caller may see rule `rule`'s plaintext. A decrypt rule whose
/// `reveal_to` does not admit the caller keeps each envelope (after
/// checking it opens: a plain value in its place is refused as for any
/// caller) or redacts the value, by its `otherwise`.
///
/// `visit` sees the plaintext of every value that crosses in clear, as raw
/// JSON text (before sealing, or after opening for the caller), for checks
/// that compare field values (canaries) without parsing the body again.
/// Kept and redacted values are not shown: the caller does not see them.
pub fn rewrite_for(
    rules: &FieldRules,
    keyring: &Keyring,
    body: &[u8],
    reveal: impl Fn(usize) -> bool,
    visit: &mut dyn FnMut(&[u8]),
) -> Result<(Option<Vec<u8>>, FieldCounts), BodyFailure> {
    use crate::access_control::{Otherwise, REDACTED_VALUE};
    let mut counts = FieldCounts::default();
    let mut scratch = Scratch::default();
    let mut digests = DigestMemo::default();
    let mut discard = Vec::new();
    let flow = rules.direction.flow();
    let result = match rules.action {
        FieldAction::Encrypt => {
            let key = keyring.primary();
            json::splice(body, &rules.automaton, |sel, out| {
                let Some(rule) = rules.rules.get(sel.rule) else {
                    return Err(EnvelopeError::Seal);
                };
                let digest = match rules.digest(sel.state) {
                    Some(d) => *d,
                    None => digests.get(flow, sel.rule, sel.path, &rule.context),
                };
                let field = Field {
                    path: sel.path,
                    context: &rule.context,
                    digest: &digest,
                    bound: sel.bound,
                };
                let opts = SealOptions {
                    mode: rule.mode,
                    blind_index: rule.blind_index,
                };
                counts.processed = counts.processed.saturating_add(1);
                visit(sel.raw);
                envelope::seal_into(key, &field, sel.raw, opts, &mut scratch, out)
            })
        }
        FieldAction::Decrypt => json::splice(body, &rules.automaton, |sel, out| {
            let Some(rule) = rules.rules.get(sel.rule) else {
                return Err(EnvelopeError::NotEnvelope);
            };
            let withheld = match &rule.reveal {
                Some(r) if !reveal(sel.rule) => Some(r.otherwise),
                _ => None,
            };
            if withheld == Some(Otherwise::Redact) {
                counts.redacted = counts.redacted.saturating_add(1);
                out.extend_from_slice(REDACTED_VALUE);
                return Ok(());
            }
            // An envelope is a JSON string of base64url characters and dots:
            // no escapes. Anything else in a protected field is refused, so
            // a plain value substituted on the way is caught, not trusted.
            let text = match sel.raw {
                [b'"', inner @ .., b'"'] if !inner.contains(&b'\\') => inner,
                _ => return Err(EnvelopeError::NotEnvelope),
            };
            let digest = match rules.digest(sel.state) {
                Some(d) => *d,
                None => digests.get(flow, sel.rule, sel.path, &rule.context),
            };
            let field = Field {
                path: sel.path,
                context: &rule.context,
                digest: &digest,
                bound: sel.bound,
            };
            if withheld == Some(Otherwise::Keep) {
                // Checked like a revealed field, then passed sealed.
                discard.clear();
                envelope::open_into(keyring, &field, text, &mut scratch, &mut discard)?;
                counts.kept = counts.kept.saturating_add(1);
                out.extend_from_slice(sel.raw);
                return Ok(());
            }
            counts.processed = counts.processed.saturating_add(1);
            let start = out.len();
            envelope::open_into(keyring, &field, text, &mut scratch, out)?;
            if let Some(plain) = out.get(start..) {
                visit(plain);
            }
            Ok(())
        }),
    };
    // Plaintext of kept fields, opened only to check them.
    zeroize::Zeroize::zeroize(&mut discard);
    result.map(|body| (body, counts)).map_err(|e| match e {
        SpliceError::Json(_) => BodyFailure::Malformed,
        SpliceError::AmbiguousMember { .. } => BodyFailure::AmbiguousMember,
        SpliceError::MissingContextField { .. } => BodyFailure::MissingContextField,
        SpliceError::Value(EnvelopeError::Seal) => BodyFailure::Seal,
        SpliceError::Value(e) => BodyFailure::Envelope(e),
    })
}

/// `D` of values whose path depends on the body (member wildcards,
/// descendants), remembered for the rest of the body: the same path
/// repeats in every element of an array.
#[derive(Default)]
struct DigestMemo {
    entries: Vec<(usize, String, FieldDigest)>,
}

impl DigestMemo {
    /// Enough for the repeated wildcard paths of one body; past it the
    /// digest is computed each time (still correct, only slower).
    const CAPACITY: usize = 64;

    fn get(
        &mut self,
        flow: crate::crypto::Flow,
        rule: usize,
        path: &str,
        context: &[u8],
    ) -> FieldDigest {
        if let Some((_, _, d)) = self
            .entries
            .iter()
            .find(|(r, p, _)| *r == rule && p == path)
        {
            return *d;
        }
        let d = FieldDigest::new(flow, path, context);
        if self.entries.len() < Self::CAPACITY {
            self.entries.push((rule, path.to_string(), d));
        }
        d
    }
}

#[cfg(test)]
mod tests;
