//! The policy's wire shape. Every struct refuses unknown fields: a typo in
//! a security control must stop the plugin, not silently disable the control.

use serde::Deserialize;

use super::PolicyError;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyDoc {
    pub version: u64,
    /// Where the keyring comes from (required by encrypt/decrypt rules).
    pub keys: Option<KeysDoc>,
    #[serde(default)]
    pub routes: Vec<RouteDoc>,
    pub logging: Option<super::logging::LoggingDoc>,
    /// Encryption in transit; compiled in `transport.rs`.
    pub transport: Option<super::transport::TransportDoc>,
    /// Unmatched requests and non-normal paths; compiled in `requests.rs`.
    pub requests: Option<super::requests::RequestsDoc>,
    /// `enforce` (default) or `report`; routes may override it.
    pub mode: Option<super::monitoring::Mode>,
    /// Canaries and unauthorized bursts; compiled in `monitoring.rs`.
    pub monitoring: Option<super::monitoring::MonitoringDoc>,
    /// Where principals come from; compiled in `crate::access_control`.
    pub principals: Option<crate::access_control::PrincipalsDoc>,
    /// Which address is the client's (allowlists, lockout without a principal).
    pub client_address: Option<crate::access_control::ClientAddressDoc>,
    /// Lockout after repeated refusals and authentication failures.
    pub lockout: Option<crate::access_control::LockoutDoc>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeysDoc {
    pub env: Option<String>,
    pub inline: Option<String>,
    #[serde(default)]
    pub allow_inline_keys_for_testing_only: bool,
}

impl std::fmt::Debug for KeysDoc {
    // `inline` holds key material.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeysDoc")
            .field("env", &self.env)
            .field("inline", &self.inline.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EncryptRuleDoc {
    pub direction: String,
    pub preset: Option<String>,
    #[serde(default)]
    pub selectors: Vec<String>,
    pub mode: Option<String>,
    pub context: Option<String>,
    #[serde(default)]
    pub blind_index: bool,
    #[serde(default)]
    pub context_fields: Vec<String>,
    pub granularity: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DecryptRuleDoc {
    pub direction: String,
    pub preset: Option<String>,
    #[serde(default)]
    pub selectors: Vec<String>,
    pub context: Option<String>,
    #[serde(default)]
    pub context_fields: Vec<String>,
    pub granularity: Option<String>,
    /// Roles that see plaintext (need-to-know); others get `otherwise`.
    pub reveal_to: Option<Vec<String>>,
    /// `keep` (the envelope, the default) or `redact`.
    pub otherwise: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BodyDoc {
    pub max_bytes: Option<u64>,
    pub non_json: Option<String>,
    pub content_encoding: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteDoc {
    pub name: String,
    #[serde(rename = "match", default)]
    pub matcher: MatchDoc,
    #[serde(default)]
    pub kill_switch: bool,
    #[serde(default)]
    pub no_store: bool,
    #[serde(default)]
    pub encrypt: Vec<EncryptRuleDoc>,
    #[serde(default)]
    pub decrypt: Vec<DecryptRuleDoc>,
    pub body: Option<BodyDoc>,
    /// Overrides the policy's `mode` for this route.
    pub mode: Option<super::monitoring::Mode>,
    /// Per-client rate and volume limits; compiled in `monitoring.rs`.
    pub limits: Option<super::monitoring::LimitsDoc>,
    /// Principals, roles, address allowlist and lockout for this route.
    pub access: Option<crate::access_control::RouteAccessDoc>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MatchDoc {
    pub host: Option<String>,
    pub path: Option<PathDoc>,
    pub methods: Option<Vec<String>>,
    pub route_name: Option<String>,
    /// Paths compare case-insensitively unless this is set.
    #[serde(default)]
    pub case_sensitive: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "snake_case")]
pub enum PathDoc {
    Prefix(String),
    Exact(String),
    Regex(String),
}

/// Deserializes with the path of the failing field kept.
pub fn parse(bytes: &[u8]) -> Result<PolicyDoc, PolicyError> {
    let de = &mut serde_json::Deserializer::from_slice(bytes);
    let doc = serde_path_to_error::deserialize(&mut *de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        // serde_json appends " at line L column C"; the field path is the
        // useful locator here, so keep the message and the path.
        PolicyError::new(
            if path.is_empty() {
                ".".to_string()
            } else {
                path
            },
            inner.to_string(),
        )
    })?;
    // Anything after the document is an error too: `{"version": 1}, ...`
    // (a brace closed too early) would otherwise load a policy without
    // the routes that follow it, and protect nothing.
    de.end().map_err(|e| {
        PolicyError::new(
            ".",
            format!("{e}: the policy must be exactly one JSON object"),
        )
    })?;
    Ok(doc)
}
