//! The access-record chain verifier (`dpp-guard verify-log`).
//!
//! Input: one op byte, then
//! - op bit 0 clear: the rest is a log. Property: no panic, and text the
//!   fuzzer made never verifies as holding a record (forging a MAC is not
//!   something a fuzzer can do, so any accepted record is a parser hole);
//! - op bit 0 set: records sealed by one or two workers (paths from the
//!   input), then up to four edits (delete, duplicate, swap, flip a byte,
//!   insert a line, cut a line, re-print a line the way Envoy's
//!   `json_format` does). Property, with `from_start`: if the edited log
//!   verifies, the records it holds are exactly the sealed ones still
//!   present byte for byte, each worker's a gap-free run from seq 0 in
//!   file order. Only cutting off the tail may go unnoticed (documented).

use dpp_core::access::chain::{verify, LogChain};
use dpp_core::{AccessRecord, Actions, RequestLogFacts, Scrubber};

use crate::fixtures::{chain_key, log_key};
use crate::Input;

pub fn check(data: &[u8]) {
    let mut input = Input::new(data);
    let op = input.byte();
    if op & 1 == 0 {
        let log = crate::text(input.rest());
        if let Ok(v) = verify(&log, &chain_key(), op & 2 != 0) {
            assert_eq!(v.records, 0, "a record the fuzzer wrote verified");
        }
        return;
    }
    edited_chain(op, input);
}

struct Sealed {
    worker: usize,
    seq: usize,
    text: String,
}

fn edited_chain(op: u8, mut input: Input<'_>) {
    let sealed_with_key = op & 2 == 0;
    let workers = 1 + usize::from(op & 4 != 0);
    let count = 1 + input.byte() as usize % 6;
    let scrubber = Scrubber::new(Some(log_key().pseudonymizer()), Default::default());
    let mut chains: Vec<LogChain> = (0..workers)
        .map(|w| LogChain::new(format!("w{w}"), sealed_with_key.then(chain_key)))
        .collect();
    let mut sealed = Vec::new();
    let mut lines = Vec::new();
    for _ in 0..count {
        let worker = input.byte() as usize % workers;
        let facts = RequestLogFacts {
            method: "GET".into(),
            path: crate::text(input.short(24)),
            status: Some(200),
            ..Default::default()
        };
        let record = AccessRecord::build(&facts, &Actions::default(), &scrubber);
        let text = chains[worker].seal(record);
        let seq = sealed
            .iter()
            .filter(|s: &&Sealed| s.worker == worker)
            .count();
        lines.push(if seq % 2 == 0 {
            text.clone()
        } else {
            format!(
                "[2026-05-01 10:00:00.000][7][info][wasm] wasm log dpp_guard: dpp_access {text}"
            )
        });
        sealed.push(Sealed { worker, seq, text });
    }
    let key = chain_key();
    let intact = verify(&lines.join("\n"), &key, true);
    if !sealed_with_key {
        assert!(intact.is_err(), "records sealed without a key verified");
        return;
    }
    let intact = intact.expect("an untouched log verifies");
    assert_eq!(intact.records, count);

    for _ in 0..input.byte() % 5 {
        let kind = input.byte();
        if lines.is_empty() {
            break;
        }
        let at = input.byte() as usize % lines.len();
        let pos = input.u16() as usize;
        let value = input.byte();
        match kind % 7 {
            0 => {
                lines.remove(at);
            }
            1 => {
                let copy = lines[at].clone();
                lines.insert(at, copy);
            }
            2 => {
                let next = (at + 1) % lines.len();
                lines.swap(at, next);
            }
            3 => {
                let mut bytes = lines[at].clone().into_bytes();
                let i = pos % bytes.len().max(1);
                if let Some(b) = bytes.get_mut(i) {
                    *b ^= value.max(1);
                }
                lines[at] = crate::text(&bytes);
            }
            4 => {
                let junk = crate::text(input.short(64));
                lines.insert(at, junk);
            }
            5 => {
                let mut cut = pos % lines[at].len().max(1);
                while !lines[at].is_char_boundary(cut) {
                    cut -= 1;
                }
                lines[at].truncate(cut);
            }
            _ => {
                let line = serde_json::json!({ "level": "info", "msg": lines[at] });
                lines[at] = line.to_string();
            }
        }
    }
    let log = lines.join("\n");
    let Ok(verified) = verify(&log, &key, true) else {
        return;
    };
    // Where each sealed record can still be read: verbatim in a line, or
    // JSON-escaped in a line that is JSON (what a JSON logger prints).
    let lines: Vec<&str> = log.lines().collect();
    let mut present: Vec<(usize, &Sealed)> = sealed
        .iter()
        .filter_map(|s| {
            let escaped = serde_json::to_string(&s.text).unwrap_or_default();
            let escaped = escaped.trim_matches('"');
            let at = lines.iter().position(|l| {
                l.contains(&s.text)
                    || (l.contains(escaped)
                        && serde_json::from_str::<serde_json::Value>(l.trim()).is_ok())
            })?;
            Some((at, s))
        })
        .collect();
    present.sort_by_key(|(at, _)| *at);
    assert_eq!(
        verified.records,
        present.len(),
        "the verifier counted records that are not the sealed ones:\n{log}"
    );
    for w in 0..workers {
        let seqs: Vec<usize> = present
            .iter()
            .filter(|(_, s)| s.worker == w)
            .map(|(_, s)| s.seq)
            .collect();
        let run: Vec<usize> = (0..seqs.len()).collect();
        assert_eq!(
            seqs, run,
            "worker {w}: a gap or reordering verified:\n{log}"
        );
    }
}
