//! The `requests` section: what happens to requests the routes do not
//! settle by themselves (no route matches; the path is not in normal form).

use serde::Deserialize;

/// Wire shape of `requests`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RequestsDoc {
    #[serde(default)]
    pub unmatched: Unmatched,
    #[serde(default)]
    pub non_normal_path: NonNormalPath,
}

/// A request that no route matches.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Unmatched {
    /// It passes untouched (the filter's default: it guards the listed routes).
    #[default]
    Allow,
    /// It is refused with 404 and an `unmatched_request` event: the listener
    /// serves exactly the policy's routes (for a hop facing untrusted callers).
    Deny,
}

/// A path whose spelling is not its normal form (`//orders`, `/x/../orders`,
/// `/%6frders`), on a listener whose policy has routes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NonNormalPath {
    /// Refused with 400 and an `ambiguous_path` event.
    #[default]
    Reject,
    /// Decided on its normal form, and `:path` is rewritten to it so the
    /// service reads what the policy decided on.
    Normalize,
}

/// The compiled `requests` section (every value is already checked by serde).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RequestsPolicy {
    pub unmatched: Unmatched,
    pub non_normal_path: NonNormalPath,
}

impl RequestsPolicy {
    pub(super) fn compile(doc: Option<RequestsDoc>) -> RequestsPolicy {
        let doc = doc.unwrap_or_default();
        RequestsPolicy {
            unmatched: doc.unmatched,
            non_normal_path: doc.non_normal_path,
        }
    }
}
