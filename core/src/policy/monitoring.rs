//! Monitoring controls: report-only mode, canary records, per-route rate
//! and volume limits, unauthorized bursts (docs/monitoring.md).

use serde::Deserialize;

use super::PolicyError;

/// Whether a control acts or only reports what it would have done.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Refusals, throttles and blocks are applied (the default).
    #[default]
    Enforce,
    /// Every control is evaluated and its event raised (flagged
    /// `report_only`), but the request and response pass as without it.
    Report,
}

impl Mode {
    pub fn name(self) -> &'static str {
        match self {
            Mode::Enforce => "enforce",
            Mode::Report => "report",
        }
    }

    pub fn is_report(self) -> bool {
        self == Mode::Report
    }
}

// ---- wire shape -------------------------------------------------------------

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MonitoringDoc {
    #[serde(default)]
    pub canaries: Vec<CanaryDoc>,
    pub unauthorized_burst: Option<BurstDoc>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CanaryDoc {
    pub digest: String,
    pub label: String,
    #[serde(default)]
    pub block: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BurstDoc {
    pub count: u64,
    pub window_seconds: u64,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsDoc {
    pub requests: Option<LimitDoc>,
    pub fields_revealed: Option<LimitDoc>,
    pub response_bytes: Option<LimitDoc>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitDoc {
    pub max: u64,
    pub window_seconds: u64,
    #[serde(default)]
    pub throttle: bool,
}

// ---- compiled -----------------------------------------------------------------

/// Longest window any counter may use (one day): longer windows keep state
/// around for little value and make "once per window" meaningless.
pub const MAX_WINDOW_SECONDS: u64 = 86_400;

/// One canary record: a value that no legitimate client ever asks for.
/// Only its keyed digest is in the policy.
#[derive(Clone, PartialEq, Eq)]
pub struct Canary {
    /// HMAC-SHA256 under the log key's canary subkey
    /// ([`crate::LogKey::canary_digest`]).
    pub digest: [u8; 32],
    /// Operator's name for it; logged in the event (never the value).
    pub label: String,
    /// Refuse the request (403) or response (502) that carries it.
    pub block: bool,
}

impl std::fmt::Debug for Canary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Canary")
            .field("label", &self.label)
            .field("block", &self.block)
            .finish()
    }
}

/// `count` 401/403 answers for one client within `window_seconds`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Burst {
    pub count: u64,
    pub window_seconds: u64,
}

/// A per-window limit for one client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limit {
    pub max: u64,
    pub window_seconds: u64,
    /// Answer 429 with `Retry-After` once the limit is exceeded.
    pub throttle: bool,
}

impl Limit {
    pub fn window_nanos(&self) -> u64 {
        self.window_seconds.saturating_mul(1_000_000_000)
    }
}

/// A route's limits.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Limits {
    pub requests: Option<Limit>,
    pub fields_revealed: Option<Limit>,
    pub response_bytes: Option<Limit>,
}

impl Limits {
    pub fn is_empty(&self) -> bool {
        self.requests.is_none() && self.fields_revealed.is_none() && self.response_bytes.is_none()
    }

    pub(super) fn compile(doc: Option<LimitsDoc>, at: &str) -> Result<Limits, PolicyError> {
        let Some(doc) = doc else {
            return Ok(Limits::default());
        };
        let one = |d: Option<LimitDoc>, name: &str| -> Result<Option<Limit>, PolicyError> {
            let Some(d) = d else { return Ok(None) };
            let at = format!("{at}.{name}");
            if d.max == 0 {
                return Err(PolicyError::new(
                    format!("{at}.max"),
                    "must be at least 1 (a route nobody may call has `kill_switch`)",
                ));
            }
            check_window(d.window_seconds, &format!("{at}.window_seconds"))?;
            Ok(Some(Limit {
                max: d.max,
                window_seconds: d.window_seconds,
                throttle: d.throttle,
            }))
        };
        Ok(Limits {
            requests: one(doc.requests, "requests")?,
            fields_revealed: one(doc.fields_revealed, "fields_revealed")?,
            response_bytes: one(doc.response_bytes, "response_bytes")?,
        })
    }
}

fn check_window(seconds: u64, at: &str) -> Result<(), PolicyError> {
    if seconds == 0 || seconds > MAX_WINDOW_SECONDS {
        return Err(PolicyError::new(
            at,
            format!("{seconds} is out of range 1..={MAX_WINDOW_SECONDS}"),
        ));
    }
    Ok(())
}

/// The policy's `monitoring` section.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Monitoring {
    pub canaries: Vec<Canary>,
    pub unauthorized_burst: Option<Burst>,
}

impl Monitoring {
    pub(super) fn compile(doc: Option<MonitoringDoc>) -> Result<Monitoring, PolicyError> {
        let Some(doc) = doc else {
            return Ok(Monitoring::default());
        };
        let mut canaries = Vec::with_capacity(doc.canaries.len());
        for (i, c) in doc.canaries.into_iter().enumerate() {
            let at = format!("monitoring.canaries[{i}]");
            let digest = parse_digest(&c.digest).ok_or_else(|| {
                PolicyError::new(
                    format!("{at}.digest"),
                    "must be 64 hex digits (print one with `dpp-guard canary digest VALUE`); \
                     canary values are never written in clear",
                )
            })?;
            if c.label.trim().is_empty() {
                return Err(PolicyError::new(format!("{at}.label"), "must not be empty"));
            }
            if !c
                .label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b))
            {
                // The label is logged: a policy-vocabulary token, not a value.
                return Err(PolicyError::new(
                    format!("{at}.label"),
                    "only letters, digits and - _ . : are allowed (it is logged)",
                ));
            }
            if canaries.iter().any(|k: &Canary| k.digest == digest) {
                return Err(PolicyError::new(format!("{at}.digest"), "listed twice"));
            }
            canaries.push(Canary {
                digest,
                label: c.label,
                block: c.block,
            });
        }
        let unauthorized_burst = match doc.unauthorized_burst {
            None => None,
            Some(b) => {
                const AT: &str = "monitoring.unauthorized_burst";
                if b.count == 0 {
                    return Err(PolicyError::new(
                        format!("{AT}.count"),
                        "must be at least 1",
                    ));
                }
                check_window(b.window_seconds, &format!("{AT}.window_seconds"))?;
                Some(Burst {
                    count: b.count,
                    window_seconds: b.window_seconds,
                })
            }
        };
        Ok(Monitoring {
            canaries,
            unauthorized_burst,
        })
    }
}

fn parse_digest(text: &str) -> Option<[u8; 32]> {
    let text = text.trim();
    if text.len() != 64 || !text.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, slot) in out.iter_mut().enumerate() {
        let pair = text.get(2 * i..2 * i + 2)?;
        *slot = u8::from_str_radix(pair, 16).ok()?;
    }
    Some(out)
}
