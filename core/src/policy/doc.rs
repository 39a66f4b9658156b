//! The policy's wire shape. Every struct refuses unknown fields: a typo in
//! a security control must stop the plugin, not silently disable the control.

use serde::Deserialize;

use super::PolicyError;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyDoc {
    pub version: u64,
    #[serde(default)]
    pub routes: Vec<RouteDoc>,
    pub logging: Option<super::logging::LoggingDoc>,
    /// Encryption in transit; compiled in `transport.rs`.
    pub transport: Option<super::transport::TransportDoc>,
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
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MatchDoc {
    pub host: Option<String>,
    pub path: Option<PathDoc>,
    pub methods: Option<Vec<String>>,
    pub route_name: Option<String>,
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
    serde_path_to_error::deserialize(de).map_err(|e| {
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
    })
}
