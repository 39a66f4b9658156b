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

fn parse(line_no: usize, text: &str) -> Result<Found, String> {
    let v: Value = serde_json::from_str(text).map_err(|e| format!("not a JSON record: {e}"))?;
    let worker = v["worker"]
        .as_str()
        .ok_or("record has no worker")?
        .to_string();
    let seq = v["seq"].as_u64().ok_or("record has no seq")?;
    let tag = |name: &str| -> Result<Option<ChainMac>, String> {
        match v.get(name) {
            None => Ok(None),
            Some(Value::String(s)) => ChainMac::from_text(s)
                .map(Some)
                .ok_or(format!("malformed {name}")),
            Some(_) => Err(format!("malformed {name}")),
        }
    };
    let (prev, mac) = (tag("prev")?, tag("mac")?);
    let body = match text.rfind(MAC_FIELD) {
        Some(i) if mac.is_some() => text.get(..i).unwrap_or_default().to_string(),
        _ => text.to_string(),
    };
    Ok(Found {
        line: line_no,
        worker,
        seq,
        prev,
        mac,
        body,
    })
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
            Err(problem) => {
                return Err(Broken {
                    line: i + 1,
                    worker: "?".into(),
                    seq: 0,
                    problem,
                })
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
