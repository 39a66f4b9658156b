//! JSONPath-style field selectors: `$.a.b`, `$.a[*].b`, `$['odd key']`,
//! `$.a[0]`, `$..Phone`, `$.a.*`, `$..*`.
//!
//! A selector is parsed into steps; the selectors of a body are compiled
//! together into an automaton (`automaton.rs`) that the splice scanner
//! follows member by member, so matching costs nothing in subtrees no
//! selector can reach (they are skipped by the validating scanner).

use std::fmt;

use super::automaton::{Automaton, Builder};

/// One step of a selector.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Step {
    /// `.name` / `['name']`: the member `name` of an object.
    Child(String),
    /// `.*` / `[*]`: every member of an object or element of an array.
    AnyChild,
    /// `[n]`: element `n` of an array.
    Index(usize),
    /// `..name`: a member `name` at any depth below.
    Descendant(String),
    /// `..*`: every value at any depth below.
    AnyDescendant,
}

/// A compiled selector.
#[derive(Clone, PartialEq, Eq)]
pub struct Selector {
    text: String,
    steps: Vec<Step>,
}

impl fmt::Debug for Selector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Selector({})", self.text)
    }
}

impl fmt::Display for Selector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// One segment of a concrete path inside a document.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Segment<'a> {
    Key(&'a str),
    Index(usize),
}

impl Selector {
    pub fn parse(text: &str) -> Result<Selector, String> {
        let b = text.as_bytes();
        if b.first() != Some(&b'$') {
            return Err("must start with `$` (e.g. `$.payload.BuyerInfo.BuyerEmail`)".into());
        }
        let mut i = 1;
        let mut steps = Vec::new();
        while i < b.len() {
            match b[i] {
                b'.' if b.get(i + 1) == Some(&b'.') => {
                    i += 2;
                    if b.get(i) == Some(&b'*') {
                        i += 1;
                        steps.push(Step::AnyDescendant);
                    } else if b.get(i) == Some(&b'[') {
                        let (name, next) = bracket_name(text, i)?;
                        i = next;
                        steps.push(Step::Descendant(name));
                    } else {
                        let (name, next) = dotted_name(text, i)?;
                        i = next;
                        steps.push(Step::Descendant(name));
                    }
                }
                b'.' => {
                    i += 1;
                    if b.get(i) == Some(&b'*') {
                        i += 1;
                        steps.push(Step::AnyChild);
                    } else {
                        let (name, next) = dotted_name(text, i)?;
                        i = next;
                        steps.push(Step::Child(name));
                    }
                }
                b'[' => {
                    if text[i..].starts_with("[*]") {
                        i += 3;
                        steps.push(Step::AnyChild);
                    } else if b.get(i + 1).is_some_and(u8::is_ascii_digit) {
                        let end = text[i..].find(']').map(|e| i + e).ok_or("unclosed `[`")?;
                        let n = text[i + 1..end]
                            .parse::<usize>()
                            .map_err(|_| format!("bad array index at byte {i}"))?;
                        i = end + 1;
                        steps.push(Step::Index(n));
                    } else {
                        let (name, next) = bracket_name(text, i)?;
                        i = next;
                        steps.push(Step::Child(name));
                    }
                }
                _ => return Err(format!("unexpected character at byte {i}")),
            }
        }
        if steps.is_empty() {
            return Err("selects the whole document; name at least one field".into());
        }
        if steps.len() > u16::MAX as usize {
            return Err("too many steps".into());
        }
        Ok(Selector {
            text: text.to_string(),
            steps,
        })
    }

    pub fn steps(&self) -> &[Step] {
        &self.steps
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }
}

fn dotted_name(text: &str, start: usize) -> Result<(String, usize), String> {
    let end = text[start..]
        .find(['.', '['])
        .map_or(text.len(), |e| start + e);
    let name = &text[start..end];
    if name.is_empty() {
        return Err(format!("empty member name at byte {start}"));
    }
    if name.contains([']', '\'', '"', '*', ' ']) {
        return Err(format!(
            "member name {name:?} needs bracket notation: ['{name}']"
        ));
    }
    Ok((name.to_string(), end))
}

/// `['name']` or `["name"]`; no escapes inside (names with quotes of the
/// same kind use the other kind).
fn bracket_name(text: &str, start: usize) -> Result<(String, usize), String> {
    let rest = &text[start..];
    let quote = match rest.as_bytes().get(1) {
        Some(q @ (b'\'' | b'"')) => *q as char,
        _ => {
            return Err(format!(
                "expected `['name']`, `[*]` or `[N]` at byte {start}"
            ))
        }
    };
    let body = &rest[2..];
    let close = body
        .find(quote)
        .ok_or_else(|| format!("unclosed quote at byte {start}"))?;
    if body.as_bytes().get(close + 1) != Some(&b']') {
        return Err(format!(
            "expected `]` after the quoted name at byte {start}"
        ));
    }
    Ok((body[..close].to_string(), start + 2 + close + 2))
}

/// The selectors of one body (all its rules) and the context fields of
/// those rules, as written; [`SelectorSet::compile`] turns them into the
/// automaton the scanner runs.
#[derive(Debug, Clone, Default)]
pub struct SelectorSet {
    pub(crate) selectors: Vec<(Selector, usize)>,
    pub(crate) context_fields: Vec<(Selector, usize)>,
}

impl SelectorSet {
    /// Adds a selector feeding rule `rule`. Earlier selectors win ties.
    pub fn push(&mut self, selector: Selector, rule: usize) {
        self.selectors.push((selector, rule));
    }

    /// Adds a context field of rule `rule` (see [`Builder::context_field`]).
    pub fn push_context_field(&mut self, field: Selector, rule: usize) {
        self.context_fields.push((field, rule));
    }

    pub fn is_empty(&self) -> bool {
        self.selectors.is_empty()
    }

    pub fn len(&self) -> usize {
        self.selectors.len()
    }

    /// The member names the selectors end at (`BuyerEmail` for
    /// `$.payload.BuyerEmail` or `$..BuyerEmail`); wildcard and index
    /// endings have no name.
    pub fn leaf_names(&self) -> impl Iterator<Item = &str> {
        self.selectors
            .iter()
            .filter_map(|(s, _)| match s.steps.last() {
                Some(Step::Child(name) | Step::Descendant(name)) => Some(name.as_str()),
                _ => None,
            })
    }

    /// Compiles the set into the automaton. Errors say the problem (a
    /// context field that is selected, too many overlapping selectors) and,
    /// when it is one context field's, its index in push order.
    pub fn compile(&self) -> Result<Automaton, (Option<usize>, String)> {
        let mut b = Builder::default();
        for (sel, rule) in &self.selectors {
            b.select(sel, *rule);
        }
        for (i, (field, rule)) in self.context_fields.iter().enumerate() {
            b.context_field(field, *rule)
                .map_err(|e| (Some(i), format!("{:?}: {e}", field.as_str())))?;
        }
        b.compile()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_documented_forms() {
        let s = Selector::parse("$.payload.Orders[*].BuyerInfo['Buyer Email']").unwrap();
        assert_eq!(
            s.steps(),
            &[
                Step::Child("payload".into()),
                Step::Child("Orders".into()),
                Step::AnyChild,
                Step::Child("BuyerInfo".into()),
                Step::Child("Buyer Email".into()),
            ]
        );
        assert_eq!(
            Selector::parse("$..Phone").unwrap().steps(),
            &[Step::Descendant("Phone".into())]
        );
        assert_eq!(
            Selector::parse("$.a.*[2]..*").unwrap().steps(),
            &[
                Step::Child("a".into()),
                Step::AnyChild,
                Step::Index(2),
                Step::AnyDescendant
            ]
        );
    }

    #[test]
    fn refuses_what_it_cannot_mean() {
        for bad in [
            "", "$", "*", "a.b", "$.", "$..", "$.a[", "$['a", "$['a'x", "$.a b", "$[-1]",
        ] {
            assert!(Selector::parse(bad).is_err(), "{bad:?} accepted");
        }
    }
}
