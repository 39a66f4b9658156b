//! The policy: a versioned JSON document that is the plugin configuration.
//!
//! Parsing is two-step: `doc` holds the wire shape (serde, unknown fields
//! refused), and this module compiles it into a [`Policy`] whose values are
//! checked and ready to use (regexes compiled, methods normalised). Every
//! error names the field by its path in the document, because the operator
//! only sees one log line when the plugin refuses to start.
//!
//! New sections (encryption, transport, logging) add a field to
//! [`doc::PolicyDoc`] and a compiled counterpart here; the route matcher
//! does not change.

mod doc;
mod fields;
mod logging;
mod monitoring;
mod requests;
mod route;
mod transport;

use std::fmt;

use crate::path::NormalPath;

pub use fields::{
    BodyOptions, Direction, FieldAction, FieldRule, FieldRules, KeySource, NonJson,
    DEFAULT_MAX_BODY_BYTES,
};
pub use logging::{LoggingPolicy, DEFAULT_LOG_KEY_ENV};
pub use monitoring::{Burst, Canary, Limit, Limits, Mode, Monitoring, MAX_WINDOW_SECONDS};
pub use requests::{NonNormalPath, RequestsPolicy, Unmatched};
pub use route::{HostMatch, MethodSet, PathMatch, Route, RouteMatch};
pub use transport::{
    ClusterName, ClusterRule, DownstreamTransport, PeerPin, TlsVersion, Transport,
    UpstreamTransport,
};

/// The only policy version this build understands.
pub const POLICY_VERSION: u64 = 1;

/// A field of the policy that is wrong, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyError {
    /// Path of the offending field, e.g. `routes[0].match.path.regex`;
    /// `.` for the document itself.
    pub field: String,
    pub problem: String,
}

impl PolicyError {
    pub(crate) fn new(field: impl Into<String>, problem: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            problem: problem.into(),
        }
    }
}

impl fmt::Display for PolicyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "invalid policy: field `{}`: {}",
            self.field, self.problem
        )
    }
}

impl std::error::Error for PolicyError {}

/// A checked, compiled policy.
#[derive(Debug, Clone)]
pub struct Policy {
    pub routes: Vec<Route>,
    /// Where the keyring comes from; set when any route has field rules.
    pub keys: Option<KeySource>,
    /// Encryption in transit (upstream guard, downstream TLS).
    pub transport: Transport,
    pub logging: LoggingPolicy,
    /// Unmatched requests and paths not in normal form.
    pub requests: RequestsPolicy,
    /// The policy-wide mode (`enforce` unless set); each route's
    /// [`Route::mode`] is resolved against it.
    pub mode: Mode,
    /// Canaries and unauthorized bursts.
    pub monitoring: Monitoring,
    /// Principals, client address and lockout (`crate::access_control`).
    pub access: crate::access_control::AccessPolicy,
    /// SHA-256 (hex) of the policy document as delivered: the identity of
    /// this configuration in `policy_loaded` events.
    pub sha256: String,
}

impl Policy {
    /// Parses and validates a policy document.
    pub fn from_json(bytes: &[u8]) -> Result<Policy, PolicyError> {
        let doc = doc::parse(bytes)?;
        if doc.version != POLICY_VERSION {
            return Err(PolicyError::new(
                "version",
                format!(
                    "unsupported version {}; this build understands version {POLICY_VERSION}",
                    doc.version
                ),
            ));
        }
        let mode = doc.mode.unwrap_or_default();
        let access = crate::access_control::AccessPolicy::compile(
            doc.principals,
            doc.client_address,
            doc.lockout,
        )?;
        let mut routes = Vec::with_capacity(doc.routes.len());
        let mut names = std::collections::BTreeSet::new();
        for (i, r) in doc.routes.into_iter().enumerate() {
            let at = format!("routes[{i}]");
            if !names.insert(r.name.clone()) {
                return Err(PolicyError::new(
                    format!("{at}.name"),
                    format!("duplicate route name {:?}", r.name),
                ));
            }
            let mut route = Route::compile(r, &at, &access)?;
            route.index = i;
            route.mode = route.mode_override.unwrap_or(mode);
            routes.push(route);
        }
        let keys = doc.keys.map(KeySource::compile).transpose()?;
        let needs_keys = routes
            .iter()
            .any(|r| r.request_fields.is_some() || r.response_fields.is_some());
        if needs_keys && keys.is_none() {
            return Err(PolicyError::new(
                "keys",
                "required: routes have `encrypt` or `decrypt` rules",
            ));
        }
        let transport = Transport::compile(doc.transport, mode)?;
        let logging = LoggingPolicy::compile(doc.logging)?;
        let requests = RequestsPolicy::compile(doc.requests);
        let monitoring = Monitoring::compile(doc.monitoring)?;
        Ok(Policy {
            routes,
            keys,
            transport,
            logging,
            requests,
            mode,
            monitoring,
            access,
            sha256: sha256_hex(bytes),
        })
    }

    /// Names of the fields the encrypt and decrypt rules select. Their
    /// values are PII wherever they show up (a query parameter, a header),
    /// so the log scrubber treats them as PII keys too.
    pub fn selector_leaf_names(&self) -> std::collections::BTreeSet<&str> {
        use fields::Direction;
        self.routes
            .iter()
            .flat_map(|r| [r.fields(Direction::Request), r.fields(Direction::Response)])
            .flatten()
            .flat_map(|rules| rules.selectors.leaf_names())
            .collect()
    }

    /// The first route whose match accepts the request, in policy order.
    /// `path` is the request's path in normal form ([`crate::path::normalize`]);
    /// [`Policy::decide_request`] refuses paths that have none.
    pub fn match_route(
        &self,
        facts: &crate::RequestFacts<'_>,
        path: &NormalPath<'_>,
    ) -> Option<&Route> {
        self.routes.iter().find(|r| r.matcher.matches(facts, path))
    }
}

fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[cfg(test)]
mod tests;
