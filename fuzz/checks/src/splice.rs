//! The JSON scan and splice rewrite, checked against serde_json.
//!
//! Input: one flags byte, the selectors, the context, then the body.
//!
//! - flags bits 0-1: number of selectors - 1; bit 2: deterministic mode;
//!   bit 3: blind index; bits 4-7: context length;
//! - per selector one byte `k`: `k < CATALOGUE.len()` picks a catalogue
//!   selector, otherwise `k - CATALOGUE.len()` (mod 32) bytes follow as the
//!   selector's text (skipped when it does not parse);
//! - the context bytes; the rest is the body.
//!
//! Properties:
//! 1. the scanner accepts exactly what serde_json accepts, except numbers
//!    outside f64 (valid JSON, passed on untouched; serde_json cannot hold
//!    them without its `arbitrary_precision` feature);
//! 2. encrypting gives JSON that serde_json reads as the original value at
//!    every position but the selected ones (found independently here, on
//!    serde_json's tree), which hold envelopes;
//! 3. decrypting that gives the original back: byte for byte in random
//!    mode, the same value (the selected values canonical) in
//!    deterministic mode;
//! 4. a refusal is the documented one: `malformed_json` only for bodies
//!    that are not JSON, `encryption_failed` never for a JSON body.

use dpp_core::crypto::Mode;
use dpp_core::json::{
    self,
    selector::{Selector, SelectorSet, Step},
};
use dpp_core::policy::{FieldAction, FieldRule, FieldRules};
use dpp_core::protect::{self, BodyFailure};
use serde_json::Value;

use crate::fixtures::keyring;
use crate::Input;

pub const CATALOGUE: &[&str] = &[
    "$.a",
    "$..a",
    "$.a.b",
    "$..*",
    "$.*",
    "$[*]",
    "$[0]",
    "$.a[*].b",
    "$['b c']",
    "$..Phone",
    "$.payload.BuyerEmail",
    "$.a[1]",
    "$..b..c",
    "$.*.*",
    "$..[\"\u{e9}\"]",
    "$.payload..BuyerInfo",
];

/// Reads the header: the encrypt rules and, for the reference matcher,
/// their selectors. `None` when no selector parsed.
pub fn rules_from(input: &mut Input<'_>) -> Option<(FieldRules, Vec<Selector>)> {
    let flags = input.byte();
    let count = (flags & 0b11) + 1;
    let mode = if flags & 0b100 != 0 {
        Mode::Deterministic
    } else {
        Mode::Random
    };
    let blind_index = flags & 0b1000 != 0;
    let mut selectors = SelectorSet::default();
    let mut parsed_all = Vec::new();
    for _ in 0..count {
        let k = input.byte() as usize;
        let parsed = match CATALOGUE.get(k) {
            Some(text) => Selector::parse(text),
            None => Selector::parse(&crate::text(input.take((k - CATALOGUE.len()) % 32))),
        };
        if let Ok(sel) = parsed {
            parsed_all.push(sel.clone());
            selectors.push(sel, 0);
        }
    }
    let context = input.take((flags >> 4) as usize).to_vec();
    if selectors.is_empty() {
        return None;
    }
    let rules = FieldRules {
        action: FieldAction::Encrypt,
        selectors,
        rules: vec![FieldRule {
            mode,
            context,
            blind_index,
        }],
    };
    Some((rules, parsed_all))
}

pub fn check(data: &[u8]) {
    let mut input = Input::new(data);
    let Some((rules, selectors)) = rules_from(&mut input) else {
        return;
    };
    let body = input.rest();
    let keyring = keyring();

    let scanner = json::validate(body);
    let serde = serde_json::from_slice::<Value>(body);
    match (&scanner, &serde) {
        (Ok(()), Ok(_)) | (Err(_), Err(_)) => {}
        (Err(e), Ok(_)) => panic!("scanner refuses JSON serde_json reads: {e}"),
        (Ok(()), Err(e)) => assert!(
            e.to_string().contains("number out of range"),
            "scanner accepts what serde_json refuses: {e}"
        ),
    }

    let encrypted = protect::rewrite(&rules, keyring, body);
    let encrypted = match (encrypted, &serde) {
        (Ok(out), _) => out,
        // Refused, and serde_json agrees the body is not JSON.
        (Err(BodyFailure::Malformed), Err(_)) => return,
        (Err(BodyFailure::Malformed), Ok(_)) => {
            panic!("malformed_json for a body serde_json reads")
        }
        (Err(f), _) => panic!("encrypting refused with {f:?} ({})", f.code()),
    };
    assert!(
        scanner.is_ok(),
        "the rewrite accepted a body validate() refuses"
    );
    let Ok(original) = serde else {
        // Not comparable with serde_json (a number out of f64's range):
        // the scanner's own guarantees still hold.
        if let Some(out) = &encrypted {
            json::validate(out).expect("encrypted body is JSON");
        }
        return;
    };
    let selected = count_selected(&original, &selectors);
    let Some(out) = encrypted else {
        assert_eq!(
            selected, 0,
            "nothing encrypted but serde_json's tree has selected values"
        );
        return;
    };
    let rewritten: Value =
        serde_json::from_slice(&out).expect("encrypted body parses with serde_json");
    selected_positions_hold(&original, &rewritten, &selectors, &mut Vec::new(), |v| {
        v.as_str().is_some_and(|s| s.starts_with("dpg1.k1."))
    });

    let decrypt = rules.with_action(FieldAction::Decrypt);
    let back = match protect::rewrite(&decrypt, keyring, &out) {
        Ok(Some(back)) => back,
        Ok(None) => panic!("decrypting found no field to open"),
        Err(f) => panic!("decrypting our own output refused: {f:?}"),
    };
    let deterministic = rules.rules.iter().any(|r| r.mode == Mode::Deterministic);
    if deterministic {
        let back: Value = serde_json::from_slice(&back).expect("decrypted body parses");
        assert_eq!(
            back, original,
            "decrypting does not give the original value back"
        );
    } else {
        assert!(
            back == body,
            "decrypting does not give the original bytes back"
        );
    }
}

#[derive(Clone, Debug)]
pub enum Seg {
    Key(String),
    Index(usize),
}

/// Reference matcher: does `steps` match the whole `path`?
fn matches(steps: &[Step], path: &[Seg]) -> bool {
    let Some((step, rest)) = steps.split_first() else {
        return path.is_empty();
    };
    let Some((first, tail)) = path.split_first() else {
        return false;
    };
    match step {
        Step::Child(n) => matches!(first, Seg::Key(k) if k == n) && matches(rest, tail),
        Step::AnyChild => matches(rest, tail),
        Step::Index(i) => matches!(first, Seg::Index(k) if k == i) && matches(rest, tail),
        Step::Descendant(n) => (0..path.len())
            .any(|j| matches!(&path[j], Seg::Key(k) if k == n) && matches(rest, &path[j + 1..])),
        Step::AnyDescendant => (1..=path.len()).any(|j| matches(rest, &path[j..])),
    }
}

fn is_selected(selectors: &[Selector], path: &[Seg]) -> bool {
    selectors.iter().any(|s| matches(s.steps(), path))
}

fn children(v: &Value) -> Vec<(Seg, &Value)> {
    match v {
        Value::Object(m) => m.iter().map(|(k, v)| (Seg::Key(k.clone()), v)).collect(),
        Value::Array(a) => a
            .iter()
            .enumerate()
            .map(|(i, v)| (Seg::Index(i), v))
            .collect(),
        _ => Vec::new(),
    }
}

/// Values the selectors select in serde_json's tree (the first match on
/// a path wins: a selected value is not searched further).
fn count_selected(v: &Value, selectors: &[Selector]) -> usize {
    fn walk(v: &Value, path: &mut Vec<Seg>, selectors: &[Selector]) -> usize {
        let mut n = 0;
        for (seg, child) in children(v) {
            path.push(seg);
            n += if is_selected(selectors, path) {
                1
            } else {
                walk(child, path, selectors)
            };
            path.pop();
        }
        n
    }
    walk(v, &mut Vec::new(), selectors)
}

/// `rewritten` equals `original` except at selected positions, whose new
/// values satisfy `holds` (an envelope, or no envelope).
pub fn selected_positions_hold(
    original: &Value,
    rewritten: &Value,
    selectors: &[Selector],
    path: &mut Vec<Seg>,
    holds: impl Fn(&Value) -> bool + Copy,
) {
    match (original, rewritten) {
        (Value::Object(a), Value::Object(b)) => {
            assert_eq!(
                a.keys().collect::<Vec<_>>(),
                b.keys().collect::<Vec<_>>(),
                "member names changed at {path:?}"
            );
        }
        (Value::Array(a), Value::Array(b)) => {
            assert_eq!(a.len(), b.len(), "array length changed at {path:?}");
        }
        (a, b) => {
            assert_eq!(a, b, "value changed at {path:?}");
            return;
        }
    }
    let rewritten_children = children(rewritten);
    for ((seg, child), (_, new)) in children(original).into_iter().zip(rewritten_children) {
        path.push(seg);
        if is_selected(selectors, path) {
            assert!(holds(new), "selected value at {path:?} is {new}");
        } else {
            selected_positions_hold(child, new, selectors, path, holds);
        }
        path.pop();
    }
}
