//! Tamper evidence: each worker's records form a MAC chain.
//!
//! Record `n` of a worker carries `seq = n`, the previous record's tag as
//! `prev`, and `mac = HMAC(chain key, prev tag || record bytes)` appended as
//! its last field. The MAC covers the record's exact bytes up to `,"mac":`,
//! so no canonical re-serialisation is needed to check it: whatever logger
//! prints the record verbatim keeps it verifiable.
//!
//! What the chain shows (with the log key, [`verify`]): a modified record,
//! a deleted record inside a chain, records moved within a chain. What it
//! cannot show: records cut off after the last one kept (tail truncation),
//! a chain cut off before its first kept record (unless `from_start`), and
//! anything done by someone holding the log key, who can re-seal at will.

use std::collections::BTreeMap;

use serde_json::Value;

use super::AccessRecord;
use crate::logkey::{ChainKey, ChainMac};

/// Start of every serialised record; how records are found in log lines.
pub const RECORD_MARKER: &str = "{\"dpp_access\":";

/// The separator before the MAC, which is always the last field.
const MAC_FIELD: &str = ",\"mac\":\"";

/// One worker's chain state: sequence counter and last tag.
#[derive(Debug)]
pub struct LogChain {
    worker: String,
    next_seq: u64,
    prev: ChainMac,
    key: Option<ChainKey>,
}

impl LogChain {
    /// `worker` must be unique per plugin instance (random); `key` absent
    /// means records are numbered but not sealed.
    pub fn new(worker: String, key: Option<ChainKey>) -> LogChain {
        LogChain {
            worker,
            next_seq: 0,
            prev: ChainMac::default(),
            key,
        }
    }

    pub fn worker(&self) -> &str {
        &self.worker
    }

    /// Numbers the record, links it to its predecessor and returns the
    /// final JSON text (one line).
    pub fn seal(&mut self, mut record: AccessRecord) -> String {
        record.worker = self.worker.clone();
        record.seq = self.next_seq;
        self.next_seq += 1;
        let Some(key) = &self.key else {
            return serde_json::to_string(&record).unwrap_or_default();
        };
        record.prev = Some(self.prev.to_text());
        let json = serde_json::to_string(&record).unwrap_or_default();
        // Serialised structs always end in `}`; the MAC covers everything
        // before it and is spliced in as the last field.
        let body = json.strip_suffix('}').unwrap_or(&json);
        let mac = key.link(&self.prev, body.as_bytes());
        self.prev = mac;
        format!("{body}{MAC_FIELD}{}\"}}", mac.to_text())
    }
}

/// A record found in a log: where, and the parts verification needs.
#[derive(Debug, Clone)]
struct Found {
    line: usize,
    worker: String,
    seq: u64,
    prev: Option<ChainMac>,
    mac: Option<ChainMac>,
    /// The bytes the MAC covers.
    body: String,
}

/// Finds the record in one log line: printed verbatim (Envoy text access
/// log, plugin log line) or as a JSON string value (Envoy `json_format`).
fn record_text(line: &str) -> Option<String> {
    if line.contains(RECORD_MARKER) {
        return record_in(line);
    }
    if line.contains("dpp_access") {
        let v: Value = serde_json::from_str(line.trim()).ok()?;
        return find_string(&v);
    }
    None
}

/// The record printed verbatim somewhere in `text`.
fn record_in(text: &str) -> Option<String> {
    let rest = text.get(text.find(RECORD_MARKER)?..)?;
    let mut it = serde_json::Deserializer::from_str(rest).into_iter::<serde::de::IgnoredAny>();
    it.next()?.ok()?;
    rest.get(..it.byte_offset()).map(str::to_string)
}

fn find_string(v: &Value) -> Option<String> {
    match v {
        // The record alone, or a plugin log line (`... dpp_access {...}`)
        // that a JSON logger wrapped as its message: a record read from
        // either form is verified, never skipped.
        Value::String(s) if s.contains(RECORD_MARKER) => record_in(s),
        Value::Object(m) => m.values().find_map(find_string),
        Value::Array(a) => a.iter().find_map(find_string),
        _ => None,
    }
}

/// Splits a sealed record into the bytes its MAC covers and the MAC. A
/// sealed record is exactly `BODY,"mac":"TAG"}`: the MAC is the last member
/// and nothing follows it. Anything after it (a member appended by whoever
/// edited the log) is outside the MAC, and would win in a JSON parse, so it
/// makes the record invalid rather than being ignored.
fn split_sealed(text: &str) -> Result<Option<(&str, ChainMac)>, String> {
    let Some(i) = text.rfind(MAC_FIELD) else {
        if text.contains("\"mac\"") {
            return Err("malformed mac member".into());
        }
        return Ok(None);
    };
    let body = text.get(..i).unwrap_or_default();
    let after = text.get(i + MAC_FIELD.len()..).unwrap_or_default();
    let Some(tag) = after.strip_suffix("\"}") else {
        return Err("members follow the mac: they are not covered by it".into());
    };
    let mac = ChainMac::from_text(tag).ok_or_else(|| {
        if tag.contains('"') {
            "members follow the mac: they are not covered by it".to_string()
        } else {
            "malformed mac".to_string()
        }
    })?;
    Ok(Some((body, mac)))
}

/// Reads a record. Every field is read from the bytes the MAC covers, never
/// from the rest of the line, and a record with a member given twice
/// (anywhere in it) is refused: JSON parsers disagree on which one counts.
fn parse(line_no: usize, text: &str) -> Result<Found, (Option<(String, u64)>, String)> {
    let sealed = split_sealed(text);
    // The fields as the bytes before the MAC state them, even to name a
    // record refused for what follows its MAC.
    let covered = match text.rfind(MAC_FIELD) {
        Some(i) => format!("{}}}", text.get(..i).unwrap_or_default()),
        None => text.to_string(),
    };
    let v: Option<Value> = serde_json::from_str(&covered).ok();
    let id = v.as_ref().and_then(|v| {
        Some((
            v.get("worker")?.as_str()?.to_string(),
            v.get("seq")?.as_u64()?,
        ))
    });
    let fail = |problem: String| (id.clone(), problem);
    let (body, mac) = match sealed.map_err(fail)? {
        Some((body, mac)) => (body, Some(mac)),
        None => (text, None),
    };
    serde_json::from_str::<NoDuplicates>(text)
        .map_err(|e| fail(format!("not a valid record: {e}")))?;
    let v = v.ok_or_else(|| fail("not a JSON record".into()))?;
    let (worker, seq) = id
        .clone()
        .ok_or_else(|| fail("record has no worker or seq".into()))?;
    let prev = match v.get("prev") {
        None => None,
        Some(Value::String(s)) => {
            Some(ChainMac::from_text(s).ok_or_else(|| fail("malformed prev".into()))?)
        }
        Some(_) => return Err(fail("malformed prev".into())),
    };
    Ok(Found {
        line: line_no,
        worker,
        seq,
        prev,
        mac,
        body: body.to_string(),
    })
}

/// Deserializes any JSON and fails on an object with a member name given
/// twice, at any depth.
struct NoDuplicates;

impl<'de> serde::Deserialize<'de> for NoDuplicates {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(NoDuplicatesVisitor)
    }
}

struct NoDuplicatesVisitor;

impl<'de> serde::de::Visitor<'de> for NoDuplicatesVisitor {
    type Value = NoDuplicates;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("JSON without duplicate members")
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<NoDuplicates, A::Error> {
        let mut names = std::collections::HashSet::new();
        while let Some(name) = map.next_key::<String>()? {
            if !names.insert(name.clone()) {
                return Err(serde::de::Error::custom(format!(
                    "member {name:?} appears twice"
                )));
            }
            map.next_value::<NoDuplicates>()?;
        }
        Ok(NoDuplicates)
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<NoDuplicates, A::Error> {
        while seq.next_element::<NoDuplicates>()?.is_some() {}
        Ok(NoDuplicates)
    }

    fn visit_bool<E>(self, _: bool) -> Result<NoDuplicates, E> {
        Ok(NoDuplicates)
    }
    fn visit_i64<E>(self, _: i64) -> Result<NoDuplicates, E> {
        Ok(NoDuplicates)
    }
    fn visit_u64<E>(self, _: u64) -> Result<NoDuplicates, E> {
        Ok(NoDuplicates)
    }
    fn visit_f64<E>(self, _: f64) -> Result<NoDuplicates, E> {
        Ok(NoDuplicates)
    }
    fn visit_str<E>(self, _: &str) -> Result<NoDuplicates, E> {
        Ok(NoDuplicates)
    }
    fn visit_unit<E>(self) -> Result<NoDuplicates, E> {
        Ok(NoDuplicates)
    }
}

/// The first broken link of a log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Broken {
    /// 1-based line number in the log.
    pub line: usize,
    pub worker: String,
    pub seq: u64,
    pub problem: String,
}

impl std::fmt::Display for Broken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "line {}: worker {} seq {}: {}",
            self.line, self.worker, self.seq, self.problem
        )
    }
}

/// What an intact log holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    pub records: usize,
    /// Per worker: first and last sequence number seen.
    pub chains: BTreeMap<String, (u64, u64)>,
}

/// Checks every record of `log` (any text with one record per line; other
/// lines are ignored; a record repeated byte for byte counts once). Returns the first broken link in file order.
/// `from_start`: every chain must begin at seq 0 (the log is complete from
/// the plugin's start), which makes head truncation visible too.
pub fn verify(log: &str, key: &ChainKey, from_start: bool) -> Result<Verified, Broken> {
    let mut found = Vec::new();
    // The same record printed by two loggers (access log and plugin log
    // into one file) is one record: exact duplicates count once.
    let mut seen = std::collections::HashSet::new();
    for (i, line) in log.lines().enumerate() {
        let Some(text) = record_text(line) else {
            continue;
        };
        if !seen.insert(text.clone()) {
            continue;
        }
        match parse(i + 1, &text) {
            Ok(f) => found.push(f),
            Err((id, problem)) => {
                let (worker, seq) = id.unwrap_or_else(|| ("?".into(), 0));
                return Err(Broken {
                    line: i + 1,
                    worker,
                    seq,
                    problem,
                });
            }
        }
    }
    // For explaining a gap: where each (worker, seq) sits in the file.
    let mut position: BTreeMap<(&str, u64), usize> = BTreeMap::new();
    for f in &found {
        position.entry((f.worker.as_str(), f.seq)).or_insert(f.line);
    }
    let mut last: BTreeMap<&str, (u64, ChainMac)> = BTreeMap::new();
    let mut chains = BTreeMap::new();
    for f in &found {
        let broken = |problem: String| Broken {
            line: f.line,
            worker: f.worker.clone(),
            seq: f.seq,
            problem,
        };
        let (Some(prev), Some(mac)) = (f.prev, f.mac) else {
            return Err(broken(
                "record is not sealed (no log key was configured)".into(),
            ));
        };
        if !key.verify(&prev, f.body.as_bytes(), &mac) {
            return Err(broken(
                "MAC mismatch: the record was modified (or the log key is not the one that sealed it)".into(),
            ));
        }
        match last.get(f.worker.as_str()) {
            None => {
                if f.seq != 0 && (from_start || prev == ChainMac::default()) {
                    return Err(broken(format!(
                        "chain starts at seq {} instead of 0: earlier records are missing",
                        f.seq
                    )));
                }
                if f.seq == 0 && prev != ChainMac::default() {
                    return Err(broken(
                        "seq 0 does not start a chain (its prev is not the initial tag)".into(),
                    ));
                }
            }
            Some((last_seq, last_mac)) => {
                let expected = last_seq + 1;
                if f.seq > expected {
                    let missing = (f.worker.as_str(), expected);
                    return Err(broken(match position.get(&missing) {
                        Some(at) => format!(
                            "expected seq {expected} here; it appears later at line {at}: records were reordered"
                        ),
                        None if f.seq == expected + 1 => format!(
                            "seq {expected} missing after seq {last_seq}: a record was deleted"
                        ),
                        None => format!(
                            "seq {expected}..={} missing after seq {last_seq}: records were deleted",
                            f.seq - 1
                        ),
                    }));
                }
                if f.seq < expected {
                    return Err(broken(format!(
                        "seq {} comes after seq {last_seq}: records were reordered or replayed",
                        f.seq
                    )));
                }
                if prev != *last_mac {
                    return Err(broken(
                        "does not link to the previous record's MAC: the record was replaced"
                            .into(),
                    ));
                }
            }
        }
        last.insert(f.worker.as_str(), (f.seq, mac));
        chains
            .entry(f.worker.clone())
            .and_modify(|e: &mut (u64, u64)| e.1 = f.seq)
            .or_insert((f.seq, f.seq));
    }
    Ok(Verified {
        records: found.len(),
        chains,
    })
}
