//! Monitoring controls that need more than one request to decide, or a
//! secret to compare with: canary records and the keys of the per-client
//! window counters (rates, volumes, unauthorized bursts) kept in the
//! host's shared data ([`crate::stream::shared`]). The exchange
//! ([`crate::stream::Exchange`]) calls these; docs/monitoring.md is the
//! operator's view.

use crate::logkey::{CanaryKey, LogKey};
use crate::policy::{Canary, Policy, PolicyError};
use crate::scrub::encoding::percent_decode;

/// The policy's canaries with the key their digests are under.
#[derive(Debug, Clone)]
pub struct Canaries {
    key: CanaryKey,
    list: Vec<Canary>,
}

/// Longest value compared with the canaries: longer path segments, query
/// values and fields are not identifiers anyone plants as a canary, and
/// hashing them would only cost time.
pub const MAX_CANARY_LEN: usize = 512;

impl Canaries {
    /// `None` when the policy lists no canaries.
    pub fn new(policy: &Policy, key: &LogKey) -> Option<Canaries> {
        let list = policy.monitoring.canaries.clone();
        (!list.is_empty()).then(|| Canaries {
            key: key.canary_key(),
            list,
        })
    }

    pub fn get(&self, index: usize) -> Option<&Canary> {
        self.list.get(index)
    }

    /// The canary whose value is exactly `value`.
    pub fn find(&self, value: &[u8]) -> Option<usize> {
        if value.is_empty() || value.len() > MAX_CANARY_LEN {
            return None;
        }
        let digest = self.key.digest(value);
        self.list.iter().position(|c| c.digest == digest)
    }

    /// Canaries in a request target (`:path`, query included): each path
    /// segment and each query value (and each query parameter without a
    /// value), as written and percent-decoded (query values also with `+`
    /// as a space), and decoded repeatedly for double encodings.
    pub fn in_target(&self, target: &str, hits: &mut Vec<usize>) {
        let (path, query) = match target.split_once('?') {
            Some((p, q)) => (p, Some(q)),
            None => (target, None),
        };
        let path = path.split_once('#').map_or(path, |(p, _)| p);
        for segment in path.split('/') {
            self.spellings(segment, false, hits);
            // `;` parameters (`/orders/ID;v=1`): the segment before them
            // is what many frameworks route on.
            if let Some((head, _)) = segment.split_once(';') {
                self.spellings(head, false, hits);
            }
        }
        let query = query.map(|q| q.split_once('#').map_or(q, |(q, _)| q));
        for pair in query.unwrap_or_default().split(['&', ';']) {
            let value = pair.split_once('=').map_or(pair, |(_, v)| v);
            self.spellings(value, true, hits);
        }
    }

    /// The request target with every path segment and query value that
    /// carries a canary replaced by `[canary]`: what the access record
    /// keeps of a request that named one (the value is logged nowhere).
    pub fn redact_target(&self, target: &str) -> String {
        let (rest, fragment) = match target.split_once('#') {
            Some((r, f)) => (r, Some(f)),
            None => (target, None),
        };
        let (path, query) = match rest.split_once('?') {
            Some((p, q)) => (p, Some(q)),
            None => (rest, None),
        };
        let hit = |text: &str, plus: bool| {
            let mut hits = Vec::new();
            self.spellings(text, plus, &mut hits);
            !hits.is_empty()
        };
        let mut out = String::with_capacity(target.len());
        for (i, segment) in path.split('/').enumerate() {
            if i > 0 {
                out.push('/');
            }
            let head = segment.split_once(';').map_or(segment, |(h, _)| h);
            match hit(segment, false) || hit(head, false) {
                true => out.push_str(REDACTED),
                false => out.push_str(segment),
            }
        }
        if let Some(query) = query {
            out.push('?');
            for (i, pair) in query.split('&').enumerate() {
                if i > 0 {
                    out.push('&');
                }
                match pair.split_once('=') {
                    Some((k, v)) if hit(v, true) => {
                        out.push_str(k);
                        out.push('=');
                        out.push_str(REDACTED);
                    }
                    None if hit(pair, true) => out.push_str(REDACTED),
                    _ => out.push_str(pair),
                }
            }
        }
        if fragment.is_some() {
            out.push('#');
        }
        out
    }

    fn spellings(&self, raw: &str, plus_is_space: bool, hits: &mut Vec<usize>) {
        if raw.is_empty() || raw.len() > 3 * MAX_CANARY_LEN {
            return;
        }
        let mut seen: Vec<String> = Vec::with_capacity(3);
        let mut cur = raw.to_string();
        for round in 0..3 {
            if !seen.contains(&cur) {
                if let Some(i) = self.find(cur.as_bytes()) {
                    push_once(hits, i);
                }
                seen.push(cur.clone());
            }
            let plus_pending = plus_is_space && round == 0 && cur.contains('+');
            if !cur.contains('%') && !plus_pending {
                break;
            }
            cur = percent_decode(&cur, plus_is_space && round == 0);
        }
    }

    /// The canary a selected JSON value carries, given its raw JSON text:
    /// a string is compared unescaped (its exact characters), any other
    /// value (a number, `true`) as written.
    pub fn in_json_value(&self, raw: &[u8]) -> Option<usize> {
        match raw.first() {
            Some(b'"') => {
                let text: String = serde_json::from_slice(raw).ok()?;
                self.find(text.as_bytes())
            }
            Some(_) => self.find(raw),
            None => None,
        }
    }
}

/// What a canary value is replaced with in the access record.
pub const REDACTED: &str = "[canary]";

/// Adds `i` unless present (a canary counts once per message).
pub fn push_once(hits: &mut Vec<usize>, i: usize) {
    if !hits.contains(&i) {
        hits.push(i);
    }
}

/// Checks at load time that what the monitoring controls need is there:
/// canaries are compared under the log key, and per-client counters are
/// keyed by pseudonyms, which need the log key too (without it every
/// client would share one placeholder and one counter).
pub fn require_log_key(policy: &Policy, key_loaded: bool) -> Result<(), PolicyError> {
    if key_loaded {
        return Ok(());
    }
    if !policy.monitoring.canaries.is_empty() {
        return Err(PolicyError::new(
            "monitoring.canaries",
            "canaries are digests under the log key, which is not loaded (logging.log_key_env)",
        ));
    }
    if policy.monitoring.unauthorized_burst.is_some() {
        return Err(PolicyError::new(
            "monitoring.unauthorized_burst",
            "per-client counters are keyed by pseudonyms, which need the log key (logging.log_key_env)",
        ));
    }
    if let Some(r) = policy.routes.iter().find(|r| !r.limits.is_empty()) {
        return Err(PolicyError::new(
            format!("routes[{}].limits", r.index),
            "per-client counters are keyed by pseudonyms, which need the log key (logging.log_key_env)",
        ));
    }
    Ok(())
}

/// What a shared counter counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Counter {
    Requests,
    FieldsRevealed,
    ResponseBytes,
    Unauthorized,
}

impl Counter {
    fn tag(self) -> &'static str {
        match self {
            Counter::Requests => "req",
            Counter::FieldsRevealed => "fld",
            Counter::ResponseBytes => "vol",
            Counter::Unauthorized => "401",
        }
    }
}

/// The shared-data key of a counter: policy vocabulary and a pseudonym,
/// never a clear principal or address. `route` is `None` for counters
/// across routes (unauthorized answers).
pub fn counter_key(counter: Counter, route: Option<&str>, who: &str) -> String {
    format!(
        "dpp_guard.mon.{}.{}.{}",
        counter.tag(),
        route.unwrap_or("*"),
        who
    )
}

/// Seconds until `window_end` (rounded up, at least 1): the `Retry-After`
/// of a throttled request.
pub fn retry_after_seconds(now: u64, window_end: u64) -> u64 {
    window_end
        .saturating_sub(now)
        .div_ceil(1_000_000_000)
        .max(1)
}

#[cfg(test)]
mod tests;
