//! Header values: credentials dropped, cookies and authorization reduced,
//! addresses and device data pseudonymised, everything else scrubbed as text.

use super::{Scrubber, REDACTED};

/// Headers whose value is a credential or carries a client certificate:
/// nothing of them is logged, not even a pseudonym (a keyed hash of a
/// bearer token would still let a key holder confirm a guessed token).
const DROPPED: &[&str] = &[
    "x-amz-access-token",
    "x-amz-security-token",
    "x-amz-rdt",
    "x-api-key",
    "x-auth-token",
    "x-csrf-token",
    "x-xsrf-token",
    "x-forwarded-client-cert",
    "x-client-cert",
    "x-ssl-client-cert",
];

/// Headers that identify the device or browser (digital fingerprint, PII
/// under the policy): kept only as a pseudonym, for correlation.
const FINGERPRINT: &[&str] = &[
    "user-agent",
    "sec-ch-ua",
    "sec-ch-ua-platform",
    "x-device-id",
];

/// What becomes of one header in a log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HeaderOutcome {
    /// Leave the header out of the log entirely.
    Drop,
    /// Log this value instead of the original.
    Value(String),
}

impl Scrubber {
    /// Scrubs one header value for a log. `name` is compared case-insensitively.
    pub fn header(&self, name: &str, value: &str) -> HeaderOutcome {
        let name = name.to_ascii_lowercase();
        let name = name.as_str();
        if DROPPED.contains(&name) {
            return HeaderOutcome::Drop;
        }
        if self.keys.contains_header(name) {
            return HeaderOutcome::Value(self.value_token(value));
        }
        HeaderOutcome::Value(match name {
            // Keep the scheme (`Bearer`, `AWS4-HMAC-SHA256`): it tells an
            // investigator which mechanism was used; the credential never.
            "authorization" | "proxy-authorization" => {
                let scheme = value.split_whitespace().next().unwrap_or_default();
                // Scheme names start with a letter; a first word that is a
                // card number or a phone is a credential, not a scheme (fuzz:
                // `4111111111111111 x` kept the card as the "scheme").
                let plausible = scheme.len() <= 32
                    && scheme.starts_with(|c: char| c.is_ascii_alphabetic())
                    && scheme
                        .bytes()
                        .all(|c| c.is_ascii_alphanumeric() || c == b'-')
                    && value.trim() != scheme
                    && self.text(scheme) == scheme;
                if plausible {
                    format!("{scheme} {REDACTED}")
                } else {
                    REDACTED.to_string()
                }
            }
            // Cookie names say which session mechanism was involved; their
            // values are session identifiers (PII and credentials).
            "cookie" => value
                .split(';')
                .filter_map(|c| c.split('=').next())
                .map(|n| format!("{}={REDACTED}", self.text(n.trim())))
                .collect::<Vec<_>>()
                .join("; "),
            "set-cookie" => {
                let n = value.split(['=', ';']).next().unwrap_or_default();
                format!("{}={REDACTED}", self.text(n.trim()))
            }
            n if FINGERPRINT.contains(&n) => self.principal_like(value),
            "referer" | "origin" | "location" => self.url(value),
            "x-request-id" => self.request_id(value),
            _ => self.text(value),
        })
    }

    /// A request id (`x-request-id`): kept when it is a plain UUID-like
    /// token ([`crate::events::safe_request_id`]), else a pseudonym (or
    /// `[redacted]` without a log key): a client-chosen id could carry a
    /// card number or a phone number.
    pub fn request_id(&self, id: &str) -> String {
        match crate::events::safe_request_id(id) {
            Some(id) => id.to_string(),
            None => self.principal_like(id),
        }
    }

    fn principal_like(&self, value: &str) -> String {
        match &self.pseudonyms {
            Some(p) => self.pseudonym(p, value),
            None => REDACTED.to_string(),
        }
    }
}
