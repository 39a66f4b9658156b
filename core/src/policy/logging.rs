//! The `logging` section: where the log key comes from, what the access
//! record holds, and which extra names count as PII keys.

use serde::Deserialize;

use super::PolicyError;
use crate::logkey::{LogKey, LogKeyError};
use crate::scrub::{PiiKeys, Scrubber};

/// Environment variable holding the log key when the policy names none.
pub const DEFAULT_LOG_KEY_ENV: &str = "DPP_GUARD_LOG_KEY";

/// Wire shape of `logging`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoggingDoc {
    pub log_key_env: Option<String>,
    #[serde(default)]
    pub require_log_key: bool,
    pub pseudonymize: Option<bool>,
    #[serde(default)]
    pub plugin_log: bool,
    #[serde(default)]
    pub pii_keys: Vec<String>,
    #[serde(default)]
    pub request_headers: Vec<String>,
    pub principal_header: Option<String>,
    #[serde(default)]
    pub access_records: AccessRecords,
}

/// Which requests get an access record.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AccessRecords {
    /// Every request the filter sees (the default: an investigation needs
    /// the unprotected traffic around a protected request too).
    #[default]
    All,
    /// Only requests a policy route covers; unprotected requests cost the
    /// filter almost nothing (no record is built or sealed).
    Protected,
    /// None; security events are still logged and counted.
    Off,
}

impl AccessRecords {
    /// Whether a request (covered by a policy route or not) gets a record.
    pub fn covers(self, protected: bool) -> bool {
        match self {
            AccessRecords::All => true,
            AccessRecords::Protected => protected,
            AccessRecords::Off => false,
        }
    }
}

/// The compiled `logging` section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoggingPolicy {
    /// Name of the environment variable with the log key (the key itself
    /// never appears in the policy: Envoy's admin endpoint prints policies).
    pub log_key_env: String,
    /// Refuse to start without a valid log key (fail closed on logging).
    pub require_log_key: bool,
    /// Replace detected values by keyed pseudonyms (with a key) rather than
    /// placeholders, so an investigation can correlate requests.
    pub pseudonymize: bool,
    /// Also write each access record as a plugin log line `dpp_access {json}`.
    pub plugin_log: bool,
    /// Extra PII key names, on top of the built-in ones.
    pub pii_keys: Vec<String>,
    /// Request headers copied (scrubbed) into the access record, lower-case.
    pub request_headers: Vec<String>,
    /// Request header naming the authenticated principal, lower-case.
    pub principal_header: Option<String>,
    pub access_records: AccessRecords,
}

impl Default for LoggingPolicy {
    fn default() -> Self {
        LoggingPolicy {
            log_key_env: DEFAULT_LOG_KEY_ENV.to_string(),
            require_log_key: false,
            pseudonymize: true,
            plugin_log: false,
            pii_keys: Vec::new(),
            request_headers: Vec::new(),
            principal_header: None,
            access_records: AccessRecords::All,
        }
    }
}

fn is_env_name(s: &str) -> bool {
    let mut b = s.bytes();
    b.next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == b'_')
        && b.all(|c| c.is_ascii_alphanumeric() || c == b'_')
}

fn is_header_name(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|c| c.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&c))
}

impl LoggingPolicy {
    pub(super) fn compile(doc: Option<LoggingDoc>) -> Result<LoggingPolicy, PolicyError> {
        let Some(doc) = doc else {
            return Ok(LoggingPolicy::default());
        };
        let log_key_env = doc
            .log_key_env
            .unwrap_or_else(|| DEFAULT_LOG_KEY_ENV.to_string());
        if !is_env_name(&log_key_env) {
            return Err(PolicyError::new(
                "logging.log_key_env",
                format!("{log_key_env:?} is not an environment variable name (letters, digits, `_`; not starting with a digit)"),
            ));
        }
        for (i, k) in doc.pii_keys.iter().enumerate() {
            if crate::scrub::keys::normalize(k).is_empty() {
                return Err(PolicyError::new(
                    format!("logging.pii_keys[{i}]"),
                    "must contain a letter or digit",
                ));
            }
        }
        let mut request_headers = Vec::with_capacity(doc.request_headers.len());
        for (i, h) in doc.request_headers.iter().enumerate() {
            if !is_header_name(h) || h.starts_with(':') {
                return Err(PolicyError::new(
                    format!("logging.request_headers[{i}]"),
                    format!("{h:?} is not a header name"),
                ));
            }
            request_headers.push(h.to_ascii_lowercase());
        }
        if let Some(h) = &doc.principal_header {
            if !is_header_name(h) {
                return Err(PolicyError::new(
                    "logging.principal_header",
                    format!("{h:?} is not a header name"),
                ));
            }
        }
        Ok(LoggingPolicy {
            log_key_env,
            require_log_key: doc.require_log_key,
            pseudonymize: doc.pseudonymize.unwrap_or(true),
            plugin_log: doc.plugin_log,
            pii_keys: doc.pii_keys,
            request_headers,
            principal_header: doc.principal_header.map(|h| h.to_ascii_lowercase()),
            access_records: doc.access_records,
        })
    }

    /// Reads the log key from the environment. An error names the policy
    /// field, for the one log line an operator sees.
    pub fn load_key(&self) -> Result<LogKey, PolicyError> {
        LogKey::from_env(&self.log_key_env).map_err(|e: LogKeyError| {
            PolicyError::new(
                "logging.log_key_env",
                format!("environment variable {} {e}", self.log_key_env),
            )
        })
    }

    /// The scrubber for this policy. `selector_leaves`: names of fields
    /// other sections protect (their values are PII wherever they appear).
    pub fn scrubber<I, S>(&self, key: Option<&LogKey>, selector_leaves: I) -> Scrubber
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let mut names: Vec<String> = self.pii_keys.clone();
        names.extend(selector_leaves.into_iter().map(|s| s.as_ref().to_string()));
        let keys = PiiKeys::with_extra(names);
        let pseudonyms = key.filter(|_| self.pseudonymize).map(LogKey::pseudonymizer);
        Scrubber::new(pseudonyms, keys)
    }
}

#[cfg(test)]
mod tests {
    use crate::Policy;

    fn err(doc: &str) -> crate::PolicyError {
        Policy::from_json(doc.as_bytes()).expect_err("refused")
    }

    #[test]
    fn access_records_choose_which_requests_are_recorded() {
        use super::AccessRecords;
        let p = |v: &str| {
            Policy::from_json(
                format!(r#"{{"version":1,"logging":{{"access_records":"{v}"}}}}"#).as_bytes(),
            )
            .map(|p| p.logging.access_records)
        };
        assert_eq!(p("all").unwrap(), AccessRecords::All);
        assert_eq!(p("protected").unwrap(), AccessRecords::Protected);
        assert_eq!(p("off").unwrap(), AccessRecords::Off);
        assert_eq!(
            err(r#"{"version":1,"logging":{"access_records":"some"}}"#).field,
            "logging.access_records"
        );
        assert!(AccessRecords::Protected.covers(true) && !AccessRecords::Protected.covers(false));
        assert!(AccessRecords::All.covers(false) && !AccessRecords::Off.covers(true));
    }

    #[test]
    fn defaults_without_section() {
        let p = Policy::from_json(br#"{"version":1}"#).unwrap();
        assert_eq!(p.logging.log_key_env, "DPP_GUARD_LOG_KEY");
        assert!(p.logging.pseudonymize && !p.logging.plugin_log && !p.logging.require_log_key);
    }

    #[test]
    fn full_section_compiles() {
        let p = Policy::from_json(
            br#"{"version":1,"logging":{"log_key_env":"MY_KEY","require_log_key":true,"pseudonymize":false,
                "plugin_log":true,"pii_keys":["loyaltyNumber"],"request_headers":["User-Agent"],
                "principal_header":"X-Principal"}}"#,
        )
        .unwrap();
        let l = &p.logging;
        assert_eq!(l.log_key_env, "MY_KEY");
        assert!(l.require_log_key && !l.pseudonymize && l.plugin_log);
        assert_eq!(l.request_headers, ["user-agent"]);
        assert_eq!(l.principal_header.as_deref(), Some("x-principal"));
        assert!(l.scrubber(None, ["x"]).keys().contains("loyalty_number"));
    }

    #[test]
    fn bad_fields_are_named() {
        assert_eq!(
            err(r#"{"version":1,"logging":{"log_key_env":"1X"}}"#).field,
            "logging.log_key_env"
        );
        assert_eq!(
            err(r#"{"version":1,"logging":{"pii_keys":["--"]}}"#).field,
            "logging.pii_keys[0]"
        );
        assert_eq!(
            err(r#"{"version":1,"logging":{"request_headers":["ok",":path"]}}"#).field,
            "logging.request_headers[1]"
        );
        assert_eq!(
            err(r#"{"version":1,"logging":{"principal_header":"a b"}}"#).field,
            "logging.principal_header"
        );
        assert_eq!(
            err(r#"{"version":1,"logging":{"plugin_logs":true}}"#).field,
            "logging.plugin_logs"
        );
    }

    #[test]
    fn missing_key_names_the_field_and_variable_but_not_a_value() {
        let p = Policy::from_json(
            br#"{"version":1,"logging":{"log_key_env":"DPP_TEST_SURELY_UNSET_42"}}"#,
        )
        .unwrap();
        let e = p.logging.load_key().unwrap_err();
        assert_eq!(e.field, "logging.log_key_env");
        assert!(
            e.problem.contains("DPP_TEST_SURELY_UNSET_42 is not set"),
            "{e}"
        );
    }

    #[test]
    fn policy_digest_is_sha256_of_the_document() {
        let p = Policy::from_json(br#"{"version":1}"#).unwrap();
        // sha256 of the 13 bytes `{"version":1}`
        assert_eq!(p.sha256.len(), 64);
        assert_ne!(
            p.sha256,
            Policy::from_json(br#"{"version": 1}"#).unwrap().sha256
        );
    }
}
