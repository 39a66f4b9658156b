//! The field-encryption sections of the policy: `keys` (where the keyring
//! comes from), and per route `encrypt` / `decrypt` rules and `body`
//! handling.

use std::fmt;

use super::doc::{BodyDoc, DecryptRuleDoc, EncryptRuleDoc, KeysDoc};
use super::PolicyError;
use crate::crypto::{FieldDigest, Flow, Keyring, Mode};
use crate::json::preset::{self, Granularity};
use crate::json::selector::{Selector, SelectorSet};
use crate::json::{Automaton, StateId};

/// Default body limit: 1 MiB. Envoy's own buffer limit
/// (`per_connection_buffer_limit_bytes`, default 1 MiB) must not be lower.
pub const DEFAULT_MAX_BODY_BYTES: usize = 1024 * 1024;

/// Where the keyring comes from.
#[derive(Clone)]
pub enum KeySource {
    /// The name of an environment variable of the Wasm VM (Envoy
    /// `host_env_keys`, Istio `vmConfig.env`).
    Env(String),
    /// Keys written in the policy itself. Testing only: the plugin
    /// configuration is printed by Envoy's admin `/config_dump`.
    InlineForTesting(String),
}

impl fmt::Debug for KeySource {
    // Inline keys are secrets even in tests: never printed.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeySource::Env(name) => write!(f, "Env({name})"),
            KeySource::InlineForTesting(_) => f.write_str("InlineForTesting(<redacted>)"),
        }
    }
}

impl KeySource {
    pub(super) fn compile(doc: KeysDoc) -> Result<KeySource, PolicyError> {
        match (doc.env, doc.inline) {
            (Some(_), Some(_)) => Err(PolicyError::new(
                "keys",
                "set either `env` or `inline`, not both",
            )),
            (None, None) => Err(PolicyError::new(
                "keys.env",
                "name the environment variable holding the keyring",
            )),
            (Some(name), None) => {
                let ok = !name.is_empty()
                    && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
                if !ok {
                    return Err(PolicyError::new(
                        "keys.env",
                        "must be an environment variable name ([A-Za-z0-9_]+)",
                    ));
                }
                if doc.allow_inline_keys_for_testing_only {
                    return Err(PolicyError::new(
                        "keys.allow_inline_keys_for_testing_only",
                        "only meaningful with `inline`",
                    ));
                }
                Ok(KeySource::Env(name))
            }
            (None, Some(text)) => {
                if !doc.allow_inline_keys_for_testing_only {
                    return Err(PolicyError::new(
                        "keys.inline",
                        "keys in the plugin configuration are refused (Envoy's admin \
                         /config_dump prints them); use `env`, or set \
                         `allow_inline_keys_for_testing_only: true` in tests",
                    ));
                }
                Ok(KeySource::InlineForTesting(text))
            }
        }
    }

    /// Loads the keyring. `env` looks up an environment variable (the
    /// plugin passes `std::env::var`, the tests a map). Errors name the
    /// policy field and never contain key text.
    pub fn load(&self, env: impl Fn(&str) -> Option<String>) -> Result<Keyring, PolicyError> {
        match self {
            KeySource::Env(name) => {
                let text = zeroize::Zeroizing::new(env(name).ok_or_else(|| {
                    PolicyError::new(
                        "keys.env",
                        format!(
                            "environment variable {name} is not set in the Wasm VM \
                             (Envoy: vm_config.environment_variables.host_env_keys)"
                        ),
                    )
                })?);
                Keyring::parse(&text)
                    .map_err(|e| PolicyError::new("keys.env", format!("keyring in {name}: {e}")))
            }
            KeySource::InlineForTesting(text) => Keyring::parse(text)
                .map_err(|e| PolicyError::new("keys.inline", format!("keyring: {e}"))),
        }
    }

    pub fn is_inline(&self) -> bool {
        matches!(self, KeySource::InlineForTesting(_))
    }
}

/// Which body a rule applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    Request,
    Response,
}

impl Direction {
    pub fn name(self) -> &'static str {
        match self {
            Direction::Request => "request",
            Direction::Response => "response",
        }
    }

    /// The direction as envelopes authenticate it.
    pub fn flow(self) -> Flow {
        match self {
            Direction::Request => Flow::Request,
            Direction::Response => Flow::Response,
        }
    }

    fn parse(s: &str, at: &str) -> Result<Direction, PolicyError> {
        match s {
            "request" => Ok(Direction::Request),
            "response" => Ok(Direction::Response),
            _ => Err(PolicyError::new(
                at,
                format!("{s:?} is not `request` or `response`"),
            )),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldAction {
    Encrypt,
    Decrypt,
}

/// One rule's parameters (the selectors live in the shared set).
#[derive(Debug, Clone)]
pub struct FieldRule {
    pub mode: Mode,
    pub context: Vec<u8>,
    pub blind_index: bool,
    /// Decrypt rules: who sees plaintext (`reveal_to`); `None`: everyone
    /// the route admits.
    pub reveal: Option<crate::access_control::Reveal>,
}

/// Everything done to one body of a route.
#[derive(Debug, Clone)]
pub struct FieldRules {
    pub action: FieldAction,
    /// Which body: authenticated in every envelope.
    pub direction: Direction,
    /// The selectors and context fields as written.
    pub selectors: SelectorSet,
    /// The same, compiled once (see `json::automaton`).
    pub automaton: Automaton,
    pub rules: Vec<FieldRule>,
    /// `D` of the authenticated data for every accept state whose path is
    /// fixed, by state id: computed here, once, not per field.
    digests: Vec<Option<FieldDigest>>,
}

impl FieldRules {
    /// The same fields and contexts with the other action: what the CLI
    /// uses to decrypt data an encrypt rule produced, and vice versa.
    pub fn with_action(&self, action: FieldAction) -> FieldRules {
        FieldRules {
            action,
            ..self.clone()
        }
    }

    /// The precomputed `D` of a selected value's state, when its path is
    /// fixed; otherwise the caller computes it from the path.
    pub fn digest(&self, state: StateId) -> Option<&FieldDigest> {
        self.digests.get(state as usize)?.as_ref()
    }

    fn compiled(
        action: FieldAction,
        direction: Direction,
        selectors: SelectorSet,
        rules: Vec<FieldRule>,
        automaton: Automaton,
    ) -> FieldRules {
        let mut digests = vec![None; automaton.len()];
        for (state, rule, path) in automaton.accept_states() {
            if let (Some(path), Some(r)) = (path, rules.get(rule)) {
                digests[state as usize] =
                    Some(FieldDigest::new(direction.flow(), path, &r.context));
            }
        }
        FieldRules {
            action,
            direction,
            selectors,
            automaton,
            rules,
            digests,
        }
    }
}

/// What to do with a body that is not JSON.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NonJson {
    /// Refuse (415 on requests, 502 on responses). The default.
    Reject,
    /// Let it pass unmodified (no field can be found in it).
    Pass,
}

/// Body handling of a route with field rules.
#[derive(Debug, Clone)]
pub struct BodyOptions {
    pub max_bytes: usize,
    pub non_json: NonJson,
}

impl Default for BodyOptions {
    fn default() -> Self {
        BodyOptions {
            max_bytes: DEFAULT_MAX_BODY_BYTES,
            non_json: NonJson::Reject,
        }
    }
}

impl BodyOptions {
    pub(super) fn compile(doc: Option<BodyDoc>, at: &str) -> Result<BodyOptions, PolicyError> {
        let Some(doc) = doc else {
            return Ok(BodyOptions::default());
        };
        let max_bytes = match doc.max_bytes {
            None => DEFAULT_MAX_BODY_BYTES,
            Some(0) => {
                return Err(PolicyError::new(
                    format!("{at}.max_bytes"),
                    "must be at least 1",
                ))
            }
            Some(n) => usize::try_from(n).map_err(|_| {
                PolicyError::new(format!("{at}.max_bytes"), "too large for this platform")
            })?,
        };
        let non_json = match doc.non_json.as_deref() {
            None | Some("reject") => NonJson::Reject,
            Some("pass") => NonJson::Pass,
            Some(other) => {
                return Err(PolicyError::new(
                    format!("{at}.non_json"),
                    format!("{other:?} is not `reject` or `pass`"),
                ))
            }
        };
        match doc.content_encoding.as_deref() {
            None | Some("reject") => {}
            Some(other) => {
                return Err(PolicyError::new(
                    format!("{at}.content_encoding"),
                    format!(
                        "{other:?}: only `reject` is supported (compressed bodies cannot \
                         be inspected, and passing them would pass PII in clear)"
                    ),
                ))
            }
        }
        Ok(BodyOptions {
            max_bytes,
            non_json,
        })
    }
}

fn compile_selectors(
    staged: &Staged,
    set: &mut SelectorSet,
    rule: usize,
) -> Result<(), PolicyError> {
    let (preset_name, selectors, at) = (staged.preset.as_deref(), &staged.selectors, &staged.at);
    if preset_name.is_none() && selectors.is_empty() {
        return Err(PolicyError::new(
            format!("{at}.selectors"),
            "name at least one selector or a `preset`",
        ));
    }
    if let Some(name) = preset_name {
        let list = preset::selectors_with(name, staged.granularity).ok_or_else(|| {
            PolicyError::new(
                format!("{at}.preset"),
                format!(
                    "unknown preset {name:?}; known: {}",
                    preset::PRESETS.join(", ")
                ),
            )
        })?;
        for s in list {
            // Presets are tested to parse; a failure would be our bug.
            let sel =
                Selector::parse(&s).map_err(|e| PolicyError::new(format!("{at}.preset"), e))?;
            set.push(sel, rule);
        }
    }
    for (i, s) in selectors.iter().enumerate() {
        let sel = Selector::parse(s)
            .map_err(|e| PolicyError::new(format!("{at}.selectors[{i}]"), format!("{s:?}: {e}")))?;
        set.push(sel, rule);
    }
    for (i, s) in staged.context_fields.iter().enumerate() {
        let sel = Selector::parse(s).map_err(|e| {
            PolicyError::new(format!("{at}.context_fields[{i}]"), format!("{s:?}: {e}"))
        })?;
        set.push_context_field(sel, rule);
    }
    Ok(())
}

/// The rules of one body while a route is compiled.
struct BodyRules {
    action: FieldAction,
    set: SelectorSet,
    rules: Vec<FieldRule>,
    /// Policy path of each context field, in push order (error messages).
    field_at: Vec<String>,
}

impl BodyRules {
    fn compile(self, direction: Direction, route_at: &str) -> Result<FieldRules, PolicyError> {
        let automaton = self.set.compile().map_err(|(field, e)| {
            let at = field
                .and_then(|i| self.field_at.get(i).cloned())
                .unwrap_or_else(|| {
                    let list = match self.action {
                        FieldAction::Encrypt => "encrypt",
                        FieldAction::Decrypt => "decrypt",
                    };
                    format!("{route_at}.{list}")
                });
            PolicyError::new(at, e)
        })?;
        Ok(FieldRules::compiled(
            self.action,
            direction,
            self.set,
            self.rules,
            automaton,
        ))
    }
}

/// One rule, checked field by field, before the rules of its body are
/// compiled together.
struct Staged {
    direction: Direction,
    action: FieldAction,
    at: String,
    preset: Option<String>,
    selectors: Vec<String>,
    context_fields: Vec<String>,
    granularity: Granularity,
    rule: FieldRule,
}

fn granularity(value: Option<&str>, preset: bool, at: &str) -> Result<Granularity, PolicyError> {
    let g = match value {
        None | Some("field") => Granularity::Field,
        Some("object") => Granularity::Object,
        Some(other) => {
            return Err(PolicyError::new(
                format!("{at}.granularity"),
                format!("{other:?} is not `field` or `object`"),
            ))
        }
    };
    if g == Granularity::Object && !preset {
        return Err(PolicyError::new(
            format!("{at}.granularity"),
            "`object` applies to a `preset` (a selector that names an object already seals it whole)",
        ));
    }
    Ok(g)
}

/// Compiles a route's `encrypt` and `decrypt` lists into at most one
/// [`FieldRules`] per direction.
pub(super) fn compile_rules(
    encrypt: Vec<EncryptRuleDoc>,
    decrypt: Vec<DecryptRuleDoc>,
    at: &str,
) -> Result<(Option<FieldRules>, Option<FieldRules>), PolicyError> {
    // Staged first so encrypt and decrypt rules of one direction are
    // checked against each other before anything is compiled.
    let mut staged: Vec<Staged> = Vec::new();
    for (i, r) in encrypt.into_iter().enumerate() {
        let at = format!("{at}.encrypt[{i}]");
        let direction = Direction::parse(&r.direction, &format!("{at}.direction"))?;
        let mode = match r.mode.as_deref() {
            None | Some("random") => Mode::Random,
            Some("deterministic") => Mode::Deterministic,
            Some(other) => {
                return Err(PolicyError::new(
                    format!("{at}.mode"),
                    format!("{other:?} is not `random` or `deterministic`"),
                ))
            }
        };
        let granularity = granularity(r.granularity.as_deref(), r.preset.is_some(), &at)?;
        staged.push(Staged {
            direction,
            action: FieldAction::Encrypt,
            rule: FieldRule {
                mode,
                context: r.context.unwrap_or_default().into_bytes(),
                blind_index: r.blind_index,
                reveal: None,
            },
            at,
            preset: r.preset,
            selectors: r.selectors,
            context_fields: r.context_fields,
            granularity,
        });
    }
    for (i, r) in decrypt.into_iter().enumerate() {
        let at = format!("{at}.decrypt[{i}]");
        let direction = Direction::parse(&r.direction, &format!("{at}.direction"))?;
        let granularity = granularity(r.granularity.as_deref(), r.preset.is_some(), &at)?;
        let reveal = crate::access_control::Reveal::compile(r.reveal_to, r.otherwise, &at)?;
        staged.push(Staged {
            direction,
            action: FieldAction::Decrypt,
            rule: FieldRule {
                mode: Mode::Random,
                context: r.context.unwrap_or_default().into_bytes(),
                blind_index: false,
                reveal,
            },
            at,
            preset: r.preset,
            selectors: r.selectors,
            context_fields: r.context_fields,
            granularity,
        });
    }
    let mut out: [Option<BodyRules>; 2] = [None, None];
    for st in staged {
        let slot = &mut out[st.direction as usize];
        if let Some(body) = slot.as_ref() {
            if body.action != st.action {
                return Err(PolicyError::new(
                    format!("{}.direction", st.at),
                    format!(
                        "the {} body already has rules of the other kind; a body is \
                         either encrypted or decrypted at one hop",
                        st.direction.name()
                    ),
                ));
            }
        }
        let body = slot.get_or_insert_with(|| BodyRules {
            action: st.action,
            set: SelectorSet::default(),
            rules: Vec::new(),
            field_at: Vec::new(),
        });
        let index = body.rules.len();
        compile_selectors(&st, &mut body.set, index)?;
        body.field_at
            .extend((0..st.context_fields.len()).map(|i| format!("{}.context_fields[{i}]", st.at)));
        body.rules.push(st.rule);
    }
    let [request, response] = out;
    let compile = |body: Option<BodyRules>, direction: Direction| {
        body.map(|b| b.compile(direction, at)).transpose()
    };
    Ok((
        compile(request, Direction::Request)?,
        compile(response, Direction::Response)?,
    ))
}
