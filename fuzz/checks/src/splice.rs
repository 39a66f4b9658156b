//! The JSON scan and splice rewrite, checked against serde_json.
//!
//! Input: one flags byte, the selectors, the context, then the body.
//!
//! - flags bits 0-1: number of selectors - 1; bit 2: deterministic mode;
//!   bit 3: blind index; bits 4-7: context length;
//! - per selector one byte `k`: `k < CATALOGUE.len()` picks a catalogue
//!   selector, otherwise `k - CATALOGUE.len()` (mod 32) bytes follow as the
//!   selector's text (the input is skipped when one does not parse);
//! - the context bytes; the rest is the body.
//!
//! The rules are compiled the way the filter compiles them: as the
//! `encrypt` rule of a policy route.
//!
//! Properties:
//! 1. the scanner accepts exactly what serde_json accepts, except numbers
//!    outside f64 (valid JSON, passed on untouched; serde_json cannot hold
//!    them without its `arbitrary_precision` feature);
//! 2. a member whose name equals a name the selectors follow under case
//!    folding, without being equal to it, is refused (`ambiguous_member`),
//!    and nothing else is;
//! 3. encrypting gives JSON that serde_json reads as the original value at
//!    every position but the selected ones (found independently here, on
//!    serde_json's tree), which hold envelopes;
//! 4. decrypting that gives the original back: byte for byte in random
//!    mode, the same value (the selected values canonical) in
//!    deterministic mode;
//! 5. `malformed_json` only for bodies that are not JSON, never
//!    `encryption_failed`.

use dpp_core::crypto::Mode;
use dpp_core::json::{
    self,
    automaton::fold,
    selector::{Selector, Step},
};
use dpp_core::policy::{Direction, FieldAction, FieldRules};
use dpp_core::protect::{self, BodyFailure};
use dpp_core::Policy;
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
    "$.K",
    "$..\u{df}",
];

/// Rules compiled from a header, with their selectors for the reference.
type Compiled = (FieldRules, Vec<Selector>);

/// Reads the header and compiles it as the filter does: the `encrypt`
/// rule of a policy route. Returns the rules and, for the reference
/// matcher, the selectors. `None` when nothing usable was read.
pub fn rules_from(input: &mut Input<'_>) -> Option<(FieldRules, Vec<Selector>)> {
    let before = input.rest_len();
    let flags = input.byte();
    let count = (flags & 0b11) + 1;
    let deterministic = flags & 0b100 != 0;
    let blind_index = flags & 0b1000 != 0;
    let mut texts = Vec::new();
    for _ in 0..count {
        let k = input.byte() as usize;
        match CATALOGUE.get(k) {
            Some(text) => texts.push(text.to_string()),
            None => texts.push(crate::text(input.take((k - CATALOGUE.len()) % 32))),
        }
    }
    let context = crate::text(input.take((flags >> 4) as usize));
    let header = input.consumed_since(before);
    // The fuzzer mostly mutates the body: compile each header once.
    thread_local! {
        static COMPILED: std::cell::RefCell<std::collections::HashMap<Vec<u8>, Option<Compiled>>> =
            Default::default();
    }
    if let Some(hit) = COMPILED.with(|c| c.borrow().get(header).cloned()) {
        return hit;
    }
    let compiled = compile(&texts, deterministic, blind_index, &context);
    COMPILED.with(|c| {
        let mut c = c.borrow_mut();
        if c.len() > 4096 {
            c.clear();
        }
        c.insert(header.to_vec(), compiled.clone());
    });
    compiled
}

fn compile(
    texts: &[String],
    deterministic: bool,
    blind_index: bool,
    context: &str,
) -> Option<(FieldRules, Vec<Selector>)> {
    let selectors: Vec<Selector> = texts
        .iter()
        .filter_map(|t| Selector::parse(t).ok())
        .collect();
    if selectors.len() != texts.len() {
        return None;
    }
    let doc = serde_json::json!({
        "version": 1,
        "keys": {"inline": "k1=AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8",
                 "allow_inline_keys_for_testing_only": true},
        "routes": [{"name": "r", "encrypt": [{
            "direction": "request",
            "selectors": texts,
            "mode": if deterministic { "deterministic" } else { "random" },
            "blind_index": blind_index,
            "context": context,
        }]}]
    });
    let policy = Policy::from_json(doc.to_string().as_bytes()).ok()?;
    let rules = policy.routes.first()?.fields(Direction::Request)?.clone();
    Some((rules, selectors))
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
    let Ok(original) = serde else {
        // Not JSON for serde_json: refused as malformed, or (a number
        // beyond f64) accepted by the scanner and still JSON after.
        match encrypted {
            Err(BodyFailure::Malformed) => assert!(scanner.is_err(), "malformed_json for JSON"),
            Err(BodyFailure::AmbiguousMember) => {}
            Ok(out) => {
                assert!(
                    scanner.is_ok(),
                    "the rewrite accepted what validate() refuses"
                );
                if let Some(out) = out {
                    json::validate(&out).expect("an encrypted body is JSON");
                }
            }
            Err(f) => panic!("encrypting refused with {f:?} ({})", f.code()),
        }
        return;
    };
    // serde_json keeps the last of duplicate members; the scanner sees all
    // of them, so the tree cannot say whether an earlier one was ambiguous.
    let duplicates = has_duplicate_members(body);
    let ambiguous = ambiguous_member(&original, &selectors);
    let encrypted = match encrypted {
        Ok(out) => {
            assert!(
                !ambiguous || duplicates,
                "a member that case-folds to a selected name passed"
            );
            out
        }
        Err(BodyFailure::AmbiguousMember) => {
            assert!(
                ambiguous || duplicates,
                "ambiguous_member without a case-folded name"
            );
            return;
        }
        Err(f) => panic!("encrypting a JSON body refused with {f:?} ({})", f.code()),
    };
    let Some(out) = encrypted else {
        assert_eq!(
            count_selected(&original, &selectors),
            0,
            "nothing encrypted but serde_json's tree has selected values"
        );
        return;
    };
    let rewritten: Value =
        serde_json::from_slice(&out).expect("an encrypted body parses with serde_json");
    selected_positions_hold(&original, &rewritten, &selectors, &mut Vec::new(), |v| {
        v.as_str().is_some_and(|s| s.starts_with("dpg1.k1."))
    });

    let decrypt = rules.with_action(FieldAction::Decrypt);
    let back = match protect::rewrite(&decrypt, keyring, &out) {
        Ok(Some(back)) => back,
        Ok(None) => panic!("decrypting found no field to open"),
        Err(f) => panic!("decrypting our own output refused: {f:?}"),
    };
    if rules.rules.iter().any(|r| r.mode == Mode::Deterministic) {
        let back: Value = serde_json::from_slice(&back).expect("a decrypted body parses");
        assert_eq!(back, original, "decrypting does not give the value back");
    } else {
        assert!(back == body, "decrypting does not give the bytes back");
    }
}

/// One step of a path in serde_json's tree.
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

/// Steps of `steps` still to match after `path` (a prefix match), for the
/// names a live selector would follow next.
fn live_steps<'s>(steps: &'s [Step], path: &[Seg], out: &mut Vec<&'s [Step]>) {
    let Some((first, tail)) = path.split_first() else {
        if !steps.is_empty() {
            out.push(steps);
        }
        return;
    };
    let Some((step, rest)) = steps.split_first() else {
        return;
    };
    match step {
        Step::Child(n) if matches!(first, Seg::Key(k) if k == n) => live_steps(rest, tail, out),
        Step::Index(i) if matches!(first, Seg::Index(k) if k == i) => live_steps(rest, tail, out),
        Step::AnyChild => live_steps(rest, tail, out),
        Step::Descendant(n) => {
            live_steps(steps, tail, out);
            if matches!(first, Seg::Key(k) if k == n) {
                live_steps(rest, tail, out);
            }
        }
        Step::AnyDescendant => {
            live_steps(steps, tail, out);
            live_steps(rest, tail, out);
        }
        _ => {}
    }
}

/// Some member, at a position the scan walks (not inside a selected
/// value), has a name that equals a name a live selector follows there
/// under case folding without being equal to it.
pub fn ambiguous_member(v: &Value, selectors: &[Selector]) -> bool {
    fn walk(v: &Value, path: &mut Vec<Seg>, selectors: &[Selector]) -> bool {
        let mut live = Vec::new();
        for s in selectors {
            live_steps(s.steps(), path, &mut live);
        }
        if live.is_empty() {
            return false;
        }
        if let Value::Object(m) = v {
            for k in m.keys() {
                let folded = fold(k);
                let clash = live.iter().any(|steps| match steps.first() {
                    Some(Step::Child(n) | Step::Descendant(n)) => n != k && fold(n) == folded,
                    _ => false,
                });
                if clash {
                    return true;
                }
            }
        }
        for (seg, child) in children(v) {
            path.push(seg);
            let hit = !is_selected(selectors, path) && walk(child, path, selectors);
            path.pop();
            if hit {
                return true;
            }
        }
        false
    }
    walk(v, &mut Vec::new(), selectors)
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

/// Some object has two members of one name (serde_json keeps the last,
/// the scanner sees both).
pub fn has_duplicate_members(body: &[u8]) -> bool {
    use serde::de::{Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};

    struct Dup(bool);

    impl<'de> Deserialize<'de> for Dup {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Dup, D::Error> {
            struct V;
            impl<'de> Visitor<'de> for V {
                type Value = Dup;
                fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                    f.write_str("JSON")
                }
                fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> Result<Dup, A::Error> {
                    let mut seen = std::collections::HashSet::new();
                    let mut dup = false;
                    while let Some(k) = m.next_key::<String>()? {
                        dup |= !seen.insert(k);
                        dup |= m.next_value::<Dup>()?.0;
                    }
                    Ok(Dup(dup))
                }
                fn visit_seq<A: SeqAccess<'de>>(self, mut s: A) -> Result<Dup, A::Error> {
                    let mut dup = false;
                    while let Some(d) = s.next_element::<Dup>()? {
                        dup |= d.0;
                    }
                    Ok(Dup(dup))
                }
                fn visit_bool<E>(self, _: bool) -> Result<Dup, E> {
                    Ok(Dup(false))
                }
                fn visit_i64<E>(self, _: i64) -> Result<Dup, E> {
                    Ok(Dup(false))
                }
                fn visit_u64<E>(self, _: u64) -> Result<Dup, E> {
                    Ok(Dup(false))
                }
                fn visit_f64<E>(self, _: f64) -> Result<Dup, E> {
                    Ok(Dup(false))
                }
                fn visit_str<E>(self, _: &str) -> Result<Dup, E> {
                    Ok(Dup(false))
                }
                fn visit_unit<E>(self) -> Result<Dup, E> {
                    Ok(Dup(false))
                }
            }
            d.deserialize_any(V)
        }
    }
    serde_json::from_slice::<Dup>(body).is_ok_and(|d| d.0)
}
