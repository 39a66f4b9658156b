//! The exports' bodies, as plain Rust: argument conversion, one call into
//! `dpp_core`, result conversion. Natively tested; `lib.rs` adapts them to
//! wasm-bindgen.

use base64ct::Encoding;
use dpp_core::crypto::envelope::{self, Scratch, SealOptions};
use dpp_core::crypto::keyring::generate_entry;
use dpp_core::crypto::{Field, FieldDigest, KeyId, Keyring, Mode};
use dpp_core::json::{self, Bound};
use dpp_core::policy::{Direction, FieldAction};
use dpp_core::protect::{self, BodyFailure};
use dpp_core::{Policy, PolicyError};
use serde::{Deserialize, Serialize};
use zeroize::{Zeroize, Zeroizing};

/// `{"ok":true,...}` or `{"ok":false,"error":{...}}` on the wire.
#[derive(Debug, Serialize)]
#[serde(untagged)]
pub enum Outcome<T: Serialize> {
    Ok {
        ok: True,
        #[serde(flatten)]
        value: T,
    },
    Err {
        ok: False,
        error: Problem,
    },
}

/// `true` as a type, so `ok` serialises as a literal.
#[derive(Debug, Clone, Copy, Default)]
pub struct True;
/// `false` as a type.
#[derive(Debug, Clone, Copy, Default)]
pub struct False;

impl Serialize for True {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bool(true)
    }
}
impl Serialize for False {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bool(false)
    }
}

impl<T: Serialize> Outcome<T> {
    pub fn ok(value: T) -> Self {
        Outcome::Ok { ok: True, value }
    }
    pub fn err(error: Problem) -> Self {
        Outcome::Err { ok: False, error }
    }
    pub fn is_ok(&self) -> bool {
        matches!(self, Outcome::Ok { .. })
    }
    pub fn value(&self) -> Option<&T> {
        match self {
            Outcome::Ok { value, .. } => Some(value),
            Outcome::Err { .. } => None,
        }
    }
    pub fn problem(&self) -> Option<&Problem> {
        match self {
            Outcome::Ok { .. } => None,
            Outcome::Err { error, .. } => Some(error),
        }
    }
}

/// What went wrong, in the words core uses. Never carries key text or
/// body content.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Problem {
    /// Stable machine-readable code (`invalid_policy`, `envelope_authentication_failed`, ...).
    pub code: String,
    /// One line for a person.
    pub message: String,
    /// For policy errors: the field path as the plugin reports it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub problem: Option<String>,
    /// For refused bodies: the filter's status and its error reply.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reply: Option<String>,
    /// For refused bodies: the security event line the filter logs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub event: Option<String>,
}

impl Problem {
    pub fn new(code: impl Into<String>, message: impl Into<String>) -> Problem {
        Problem {
            code: code.into(),
            message: message.into(),
            ..Problem::default()
        }
    }

    pub fn policy(e: &PolicyError) -> Problem {
        Problem {
            code: "invalid_policy".into(),
            // Display is exactly the plugin's log line after `dpp-guard: `.
            message: e.to_string(),
            field: Some(e.field.clone()),
            problem: Some(e.problem.clone()),
            ..Problem::default()
        }
    }
}

// ---- policy -------------------------------------------------------------

#[derive(Debug, Serialize)]
pub struct PolicySummary {
    /// SHA-256 of the document, as in the `policy_loaded` event.
    pub sha256: String,
    pub routes: Vec<RouteSummary>,
    /// Where the filter would read the keyring from (`env` name or `inline`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub keys: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct RouteSummary {
    pub name: String,
    pub kill_switch: bool,
    pub no_store: bool,
    /// `encrypt` / `decrypt` per direction, absent without rules.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub response: Option<&'static str>,
    pub max_body_bytes: usize,
}

pub fn action_name(a: FieldAction) -> &'static str {
    match a {
        FieldAction::Encrypt => "encrypt",
        FieldAction::Decrypt => "decrypt",
    }
}

pub fn summary(policy: &Policy) -> PolicySummary {
    use dpp_core::policy::KeySource;
    PolicySummary {
        sha256: policy.sha256.clone(),
        routes: policy
            .routes
            .iter()
            .map(|r| RouteSummary {
                name: r.name.clone(),
                kill_switch: r.kill_switch,
                no_store: r.no_store,
                request: r.request_fields.as_ref().map(|f| action_name(f.action)),
                response: r.response_fields.as_ref().map(|f| action_name(f.action)),
                max_body_bytes: r.body.max_bytes,
            })
            .collect(),
        keys: policy.keys.as_ref().map(|k| match k {
            KeySource::Env(name) => format!("env {name}"),
            KeySource::InlineForTesting(_) => "inline (testing only)".to_string(),
        }),
    }
}

pub fn check_policy(json: &str) -> Outcome<PolicySummary> {
    match Policy::from_json(json.as_bytes()) {
        Ok(p) => Outcome::ok(summary(&p)),
        Err(e) => Outcome::err(Problem::policy(&e)),
    }
}

// ---- keys ---------------------------------------------------------------

pub fn parse_keyring(text: &str) -> Result<Keyring, String> {
    Keyring::parse(text).map_err(|e| format!("invalid keyring: {e}"))
}

/// Parses UTF-8 keyring bytes, then wipes them (the caller's buffer).
pub fn parse_keyring_bytes(bytes: &mut [u8]) -> Result<Keyring, String> {
    let result = match std::str::from_utf8(bytes) {
        Ok(text) => parse_keyring(text),
        Err(_) => Err("invalid keyring: not UTF-8".to_string()),
    };
    bytes.zeroize();
    result
}

pub fn generate_key_entry(id: &str) -> Result<Zeroizing<String>, String> {
    let id = KeyId::new(id).map_err(|e| e.to_string())?;
    generate_entry(&id).map_err(|e| e.to_string())
}

/// 32 random bytes, base64 (standard alphabet, padded): what
/// `openssl rand -base64 32` prints and [`dpp_core::LogKey::parse`] reads.
pub fn generate_log_key() -> Result<Zeroizing<String>, String> {
    let mut bytes = Zeroizing::new([0u8; dpp_core::logkey::LOG_KEY_LEN]);
    getrandom::fill(bytes.as_mut()).map_err(|_| "the random source failed".to_string())?;
    // The log key's own encoding (standard base64); a key that does not
    // parse back would be a bug, so it is checked rather than assumed.
    let text = Zeroizing::new(base64ct::Base64::encode_string(bytes.as_ref()));
    dpp_core::LogKey::parse(&text).map_err(|e| e.to_string())?;
    Ok(text)
}

// ---- envelopes ----------------------------------------------------------

/// Where a value sits: what the envelope's authenticated data binds
/// besides the path (docs/envelope.md).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Position {
    /// `request` or `response`: which message carries the envelope.
    #[serde(default = "request")]
    pub direction: String,
    /// The rule's `context`.
    #[serde(default)]
    pub context: String,
    /// The record's context fields (the rule's `context_fields`), in
    /// order: (member name, JSON value).
    #[serde(default)]
    pub bound: Vec<(String, String)>,
}

fn request() -> String {
    "request".into()
}

/// Options for sealing one value: its position and how.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SealRequest {
    #[serde(flatten)]
    pub position: Position,
    #[serde(default)]
    pub mode: Option<String>,
    #[serde(default)]
    pub blind_index: bool,
}

#[derive(Debug, Serialize)]
pub struct Sealed {
    /// The envelope text (no JSON quotes).
    pub envelope: String,
}

#[derive(Debug, Serialize)]
pub struct Opened {
    /// The original JSON value's text.
    pub value: String,
}

fn envelope_problem(e: envelope::EnvelopeError) -> Problem {
    Problem::new(e.code(), format!("envelope refused: {}", e.code()))
}

fn bad_options(message: impl Into<String>) -> Problem {
    Problem::new("bad_options", message)
}

fn parse_options<T: serde::de::DeserializeOwned>(options: &str) -> Result<T, Problem> {
    let options = if options.trim().is_empty() {
        "{}"
    } else {
        options
    };
    serde_json::from_str(options).map_err(|e| bad_options(e.to_string()))
}

/// Calls `f` with the envelope [`Field`] of `path` at `pos`: the digest `D`
/// and the bound fields as canonical JSON, computed by core.
fn with_field<R>(
    path: &str,
    pos: &Position,
    f: impl FnOnce(&Field<'_>) -> R,
) -> Result<R, Problem> {
    let dir = parse_direction(&pos.direction).ok_or_else(|| {
        bad_options(format!(
            "direction {:?} is not `request` or `response`",
            pos.direction
        ))
    })?;
    let names: Vec<Box<str>> = pos.bound.iter().map(|(n, _)| n.as_str().into()).collect();
    let mut arena = Vec::new();
    let mut ranges = Vec::with_capacity(pos.bound.len());
    for (name, value) in &pos.bound {
        let start = arena.len();
        json::canonical(value.as_bytes(), &mut arena)
            .map_err(|e| bad_options(format!("bound field {name:?} is not JSON: {e}")))?;
        ranges.push((start, arena.len()));
    }
    let digest = FieldDigest::new(dir.flow(), path, pos.context.as_bytes());
    let field = Field {
        path,
        context: pos.context.as_bytes(),
        digest: &digest,
        bound: Bound::from_parts(&names, &ranges, &arena),
    };
    Ok(f(&field))
}

pub fn seal_value(keyring: &Keyring, path: &str, value: &[u8], options: &str) -> Outcome<Sealed> {
    let req: SealRequest = match parse_options(options) {
        Ok(r) => r,
        Err(p) => return Outcome::err(p),
    };
    let mode = match req.mode.as_deref() {
        None | Some("random") => Mode::Random,
        Some("deterministic") => Mode::Deterministic,
        Some(other) => {
            return Outcome::err(bad_options(format!(
                "mode {other:?} is not `random` or `deterministic`"
            )))
        }
    };
    let opts = SealOptions {
        mode,
        blind_index: req.blind_index,
    };
    let mut out = Vec::new();
    let sealed = with_field(path, &req.position, |field| {
        envelope::seal_into(
            keyring.primary(),
            field,
            value,
            opts,
            &mut Scratch::default(),
            &mut out,
        )
    });
    match sealed {
        // seal_into writes a JSON string: quotes around base64url and dots.
        Ok(Ok(())) => Outcome::ok(Sealed {
            envelope: String::from_utf8_lossy(&out).trim_matches('"').to_string(),
        }),
        Ok(Err(e)) => Outcome::err(envelope_problem(e)),
        Err(p) => Outcome::err(p),
    }
}

pub fn open_envelope(keyring: &Keyring, path: &str, text: &str, options: &str) -> Outcome<Opened> {
    let pos: Position = match parse_options(options) {
        Ok(p) => p,
        Err(p) => return Outcome::err(p),
    };
    let mut out = Zeroizing::new(Vec::new());
    let opened = with_field(path, &pos, |field| {
        envelope::open_into(
            keyring,
            field,
            text.as_bytes(),
            &mut Scratch::default(),
            &mut out,
        )
    });
    match opened {
        Ok(Ok(())) => Outcome::ok(Opened {
            value: String::from_utf8_lossy(&out).into_owned(),
        }),
        Ok(Err(e)) => Outcome::err(envelope_problem(e)),
        Err(p) => Outcome::err(p),
    }
}

// ---- bodies -------------------------------------------------------------

#[derive(Debug, Serialize)]
pub struct Protected {
    pub action: &'static str,
    /// Fields sealed or opened.
    pub fields: u32,
    /// False when nothing was selected (the body passes as it was).
    pub changed: bool,
    /// The body as the filter forwards it.
    pub body: String,
}

pub fn parse_direction(s: &str) -> Option<Direction> {
    match s {
        "request" => Some(Direction::Request),
        "response" => Some(Direction::Response),
        _ => None,
    }
}

pub fn parse_action(s: &str) -> Option<FieldAction> {
    match s {
        "encrypt" => Some(FieldAction::Encrypt),
        "decrypt" => Some(FieldAction::Decrypt),
        _ => None,
    }
}

/// The problem for a refused body: the filter's status, reply and event.
pub fn body_problem(failure: BodyFailure, dir: Direction, route: &str, method: &str) -> Problem {
    let (reply, event) = failure.reply(dir, route, method);
    let code = match failure {
        BodyFailure::Envelope(e) => e.code(),
        other => other.code(),
    };
    Problem {
        code: code.to_string(),
        message: format!("{} {}: {}", dir.name(), failure.code(), code),
        status: Some(reply.status),
        reply: Some(reply.body),
        event: Some(event.to_log_line()),
        ..Problem::default()
    }
}

/// A route's field rules of one direction on a complete body, as
/// `dpp-guard encrypt|decrypt --route R --direction D` runs them.
pub fn protect(
    policy: &Policy,
    keyring: &Keyring,
    route: &str,
    direction: &str,
    action: Option<&str>,
    body: &[u8],
) -> Outcome<Protected> {
    let Some(dir) = parse_direction(direction) else {
        return Outcome::err(Problem::new(
            "bad_direction",
            format!("direction {direction:?} is not `request` or `response`"),
        ));
    };
    let Some(r) = policy.routes.iter().find(|r| r.name == route) else {
        return Outcome::err(Problem::new(
            "no_such_route",
            format!("no route named {route:?} in the policy"),
        ));
    };
    let Some(rules) = r.fields(dir) else {
        return Outcome::err(Problem::new(
            "no_rules",
            format!("route {route:?} has no {} rules", dir.name()),
        ));
    };
    let rules = match action {
        None => rules.clone(),
        Some(a) => match parse_action(a) {
            Some(a) => rules.with_action(a),
            None => {
                return Outcome::err(Problem::new(
                    "bad_action",
                    format!("action {a:?} is not `encrypt` or `decrypt`"),
                ))
            }
        },
    };
    match protect::rewrite_counted(&rules, keyring, body) {
        Ok((new, fields)) => Outcome::ok(Protected {
            action: action_name(rules.action),
            fields,
            changed: new.is_some(),
            body: String::from_utf8_lossy(new.as_deref().unwrap_or(body)).into_owned(),
        }),
        // No request here, so no method: the event says `OTHER`.
        Err(f) => Outcome::err(body_problem(f, dir, &r.name, "")),
    }
}

#[cfg(test)]
mod tests;
