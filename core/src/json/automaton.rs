//! Selectors compiled once, at configure time, into a deterministic
//! automaton over path segments (a trie where every selector is concrete,
//! a subset construction where `..name` or wildcards overlap).
//!
//! Why: matching a body against the ~120 selectors of a preset one selector
//! state at a time costs a string comparison per live selector per member;
//! the automaton costs one binary search per member, and everything that
//! depends only on the position (the canonical path of a selected value,
//! the authenticated-data digest built from it) can be computed here once.
//!
//! Each state also knows the member names that would move it forward, in
//! case-folded form, so the scanner can refuse a member whose name equals a
//! selected name under Unicode case folding without being equal to it
//! (Go's encoding/json and ASP.NET bind such names to the selected field).

use std::collections::HashMap;

use super::selector::{Selector, Step};

/// Index of a state. [`DEAD`] is the state from which nothing can match.
pub type StateId = u32;
pub const DEAD: StateId = 0;
const ROOT: StateId = 1;

/// Upper bound on states, so overlapping descendant selectors cannot make
/// configuration time or memory explode; the preset needs a few hundred.
pub const MAX_STATES: usize = 20_000;

/// What a pattern does when it completes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Target {
    /// A selector of rule `rule`: the value here is selected (taken whole).
    Select { rule: usize },
    /// A record pattern: the object here is a record of context group `group`.
    Record { group: u32 },
}

#[derive(Debug, Clone)]
struct Pattern {
    steps: Vec<Step>,
    target: Target,
}

/// "Next step to match" of pattern `pat`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
struct Item {
    pat: u32,
    step: u32,
}

/// A segment as the construction sees it: a name or index that some step
/// names, or any other one.
#[derive(Debug, Clone, Copy)]
enum Seg<'a> {
    Name(&'a str),
    OtherName,
    Index(usize),
    OtherIndex,
}

/// What happens at a state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Nothing below can be selected: skip the value.
    Dead,
    /// Some selector may still match deeper: walk the value.
    Live,
    /// A selector of `rule` completes here: the value is selected whole.
    Accept { rule: usize },
}

/// One state of the automaton.
#[derive(Debug, Clone)]
pub struct State {
    pub kind: Kind,
    /// Member transitions named by some step, sorted by name.
    names: Vec<(Box<str>, StateId)>,
    other_name: StateId,
    indices: Vec<(usize, StateId)>,
    other_index: StateId,
    /// Case-folded forms of `names` (sorted, deduplicated).
    folded: Vec<Box<str>>,
    /// The canonical path of every value that reaches this state, when the
    /// way here fixes it (names the selectors spell, array elements); `None`
    /// when it depends on the body (member wildcards, descendants).
    pub path: Option<Box<str>>,
    /// Context groups whose record is the object at this state.
    pub records: Vec<u32>,
}

impl State {
    fn new(kind: Kind) -> State {
        State {
            kind,
            names: Vec::new(),
            other_name: DEAD,
            indices: Vec::new(),
            other_index: DEAD,
            folded: Vec::new(),
            path: None,
            records: Vec::new(),
        }
    }

    /// The state reached through member `name`.
    #[inline]
    pub fn by_name(&self, name: &str) -> Lookup {
        match self.names.binary_search_by(|(n, _)| (**n).cmp(name)) {
            Ok(i) => Lookup::Named(self.names[i].1),
            Err(_) => Lookup::Other(self.other_name),
        }
    }

    /// The state reached through array element `index`.
    #[inline]
    pub fn by_index(&self, index: usize) -> StateId {
        if self.indices.is_empty() {
            return self.other_index;
        }
        match self.indices.binary_search_by_key(&index, |(i, _)| *i) {
            Ok(i) => self.indices[i].1,
            Err(_) => self.other_index,
        }
    }

    /// Whether `name`, which matched no named transition, equals one of them
    /// under case folding.
    pub fn folds_to_a_name(&self, name: &str) -> bool {
        if self.folded.is_empty() {
            return false;
        }
        if name.is_ascii() {
            // ASCII folds to ASCII lowercase; compare without allocating.
            self.folded
                .binary_search_by(|f| f.bytes().cmp(name.bytes().map(|b| b.to_ascii_lowercase())))
                .is_ok()
        } else {
            self.folded
                .binary_search_by(|f| (**f).cmp(fold(name).as_str()))
                .is_ok()
        }
    }
}

/// Result of a member lookup.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lookup {
    /// A step names this member.
    Named(StateId),
    /// No step names it: the wildcard transition (often [`DEAD`]).
    Other(StateId),
}

impl Lookup {
    pub fn named(self) -> Option<StateId> {
        match self {
            Lookup::Named(t) => Some(t),
            Lookup::Other(_) => None,
        }
    }
}

/// A case-folding key: lower(upper(lower(c))) for every character, with
/// the full (multi-character) mappings of `char`. It equates what Unicode
/// full case folding equates (`ß`/`ss`, `ς`/`σ`), and also what simple
/// upper-casing does (`ſ`->`S`->`s`, Kelvin sign->`k`, dotless `ı`->`I`->`i`),
/// which is what Go's `EqualFold` and .NET's `OrdinalIgnoreCase` bind.
pub fn fold(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        for l in c.to_lowercase() {
            for u in l.to_uppercase() {
                out.extend(u.to_lowercase());
            }
        }
    }
    out
}

/// A record pattern and the rule it belongs to, for context fields.
#[derive(Debug, Clone)]
pub struct RecordGroup {
    /// The rule whose values bind to this record.
    pub rule: usize,
    /// The member names bound, in the rule's order.
    pub names: Vec<Box<str>>,
    /// Their case-folded forms, same order.
    pub folded: Vec<Box<str>>,
}

impl RecordGroup {
    /// Whether member `name` equals bound name `k` under case folding.
    pub fn folds_to(&self, k: usize, name: &str) -> bool {
        let Some(f) = self.folded.get(k) else {
            return false;
        };
        if name.is_ascii() {
            f.len() == name.len()
                && f.bytes()
                    .zip(name.bytes())
                    .all(|(a, b)| a == b.to_ascii_lowercase())
        } else {
            **f == *fold(name)
        }
    }
}

/// The compiled automaton of one body's selectors and record patterns.
#[derive(Debug, Clone, Default)]
pub struct Automaton {
    states: Vec<State>,
    pub groups: Vec<RecordGroup>,
}

/// Collects selectors and record patterns, then compiles them.
#[derive(Debug, Clone, Default)]
pub struct Builder {
    patterns: Vec<Pattern>,
    groups: Vec<RecordGroup>,
    /// (record steps, rule) -> group, so fields of one record share a group.
    group_of: HashMap<(Vec<Step>, usize), u32>,
    /// Context fields as written, for the configure-time checks.
    fields: Vec<(Vec<Step>, String, String)>,
}

impl Builder {
    /// Adds a selector feeding rule `rule`. Earlier selectors win ties.
    pub fn select(&mut self, selector: &Selector, rule: usize) {
        self.patterns.push(Pattern {
            steps: selector.steps().to_vec(),
            target: Target::Select { rule },
        });
    }

    /// Adds a context field of rule `rule`: a selector `RECORD.name` whose
    /// value joins the context of every value of the rule selected inside
    /// the nearest `RECORD`. Only `.name` and `[*]` steps, ending in a name.
    pub fn context_field(&mut self, field: &Selector, rule: usize) -> Result<(), String> {
        let steps = field.steps();
        let Some((Step::Child(name), record)) = steps.split_last() else {
            return Err("a context field must end with a member name (`.name`)".into());
        };
        if record
            .iter()
            .any(|s| !matches!(s, Step::Child(_) | Step::AnyChild))
        {
            return Err(
                "a context field is a concrete path: only `.name` and `[*]` steps (no `..`, no index)"
                    .into(),
            );
        }
        let key = (record.to_vec(), rule);
        let group = match self.group_of.get(&key) {
            Some(g) => *g,
            None => {
                let g = self.groups.len() as u32;
                self.groups.push(RecordGroup {
                    rule,
                    names: Vec::new(),
                    folded: Vec::new(),
                });
                self.group_of.insert(key, g);
                self.patterns.push(Pattern {
                    steps: record.to_vec(),
                    target: Target::Record { group: g },
                });
                g
            }
        };
        let g = &mut self.groups[group as usize];
        if g.names.iter().any(|n| **n == **name) {
            return Err(format!("context field {:?} named twice", field.as_str()));
        }
        g.names.push(name.as_str().into());
        g.folded.push(fold(name).into());
        self.fields
            .push((steps.to_vec(), field.as_str().to_string(), name.clone()));
        Ok(())
    }

    pub fn compile(self) -> Result<Automaton, (Option<usize>, String)> {
        let mut c = Construction {
            patterns: &self.patterns,
            states: vec![State::new(Kind::Dead)],
            ids: HashMap::new(),
            pending: Vec::new(),
        };
        let start: Vec<Item> = (0..self.patterns.len() as u32)
            .map(|pat| Item { pat, step: 0 })
            .filter(|it| !c.patterns[it.pat as usize].steps.is_empty())
            .collect();
        let too_big = |e: String| (None, e);
        let root = c
            .intern(start, Vec::new(), Some("$".into()))
            .map_err(too_big)?;
        debug_assert!(root == ROOT || root == DEAD);
        while let Some((id, items)) = c.pending.pop() {
            c.expand(id, &items).map_err(too_big)?;
        }
        let auto = Automaton {
            states: c.states,
            groups: self.groups,
        };
        for (i, (steps, text, _)) in self.fields.iter().enumerate() {
            if auto.selects_on_the_way(steps) {
                return Err((
                    Some(i),
                    format!(
                        "context field {text:?} is selected by a rule of this body (or lies \
                         inside a selected value); a bound field must stay readable"
                    ),
                ));
            }
        }
        Ok(auto)
    }
}

/// Interning key of a live state: its items, the records completing at
/// it, and its canonical path when that is fixed.
type Key = (Vec<Item>, Vec<u32>, Option<Box<str>>);

struct Construction<'p> {
    patterns: &'p [Pattern],
    states: Vec<State>,
    ids: HashMap<Key, StateId>,
    pending: Vec<(StateId, Vec<Item>)>,
}

impl Construction<'_> {
    /// The live state of `items`. `path` is the canonical path of the
    /// position when it is fixed: states are then kept apart per path, so
    /// the path (and what is computed from it) belongs to the state. A set
    /// with `..` items recurs at any depth, so it never carries a path
    /// (that also bounds the number of states).
    fn intern(
        &mut self,
        items: Vec<Item>,
        records: Vec<u32>,
        path: Option<String>,
    ) -> Result<StateId, String> {
        // A position is only worth walking if some selector is still alive.
        let live = items
            .iter()
            .any(|it| matches!(self.patterns[it.pat as usize].target, Target::Select { .. }));
        if !live {
            return Ok(DEAD);
        }
        let steps_of = |it: &Item| &self.patterns[it.pat as usize].steps;
        let descendant = |s: &Step| matches!(s, Step::Descendant(_) | Step::AnyDescendant);
        // Items past a `..` step (the `.b` of `$..a.b`) recur at any depth
        // too (`a.a.a...` keeps them alive): with a path in the key, every
        // depth would be a new state, without bound.
        let recurs = items
            .iter()
            .all(|it| steps_of(it).get(it.step as usize).is_some_and(descendant))
            || items
                .iter()
                .any(|it| steps_of(it).iter().take(it.step as usize).any(descendant));
        let path: Option<Box<str>> = if recurs { None } else { path.map(Into::into) };
        let key = (items, records, path);
        if let Some(id) = self.ids.get(&key) {
            return Ok(*id);
        }
        let id = self.new_state(State::new(Kind::Live))?;
        self.states[id as usize].records = key.1.clone();
        self.states[id as usize].path = key.2.clone();
        self.pending.push((id, key.0.clone()));
        self.ids.insert(key, id);
        Ok(id)
    }

    fn new_state(&mut self, st: State) -> Result<StateId, String> {
        if self.states.len() >= MAX_STATES {
            return Err(format!(
                "the selectors of this body are too many or overlap too much (more than \
                 {MAX_STATES} matching states); use fewer `..` selectors"
            ));
        }
        self.states.push(st);
        Ok((self.states.len() - 1) as StateId)
    }

    /// The state after following `seg` from the items `from`, whose
    /// position has the fixed path `base` (if any).
    fn follow(
        &mut self,
        from: &[Item],
        seg: Seg<'_>,
        base: Option<&str>,
    ) -> Result<StateId, String> {
        let path = base.and_then(|b| {
            let mut p = b.to_string();
            match seg {
                Seg::Name(n) => super::push_segment(&mut p, super::selector::Segment::Key(n)),
                Seg::Index(_) | Seg::OtherIndex => {
                    super::push_segment(&mut p, super::selector::Segment::Index(0))
                }
                // The name comes from the body.
                Seg::OtherName => return None,
            }
            Some(p)
        });
        let mut next: Vec<Item> = Vec::new();
        let mut records: Vec<u32> = Vec::new();
        let mut accept: Option<(u32, usize)> = None;
        for it in from {
            let pat = &self.patterns[it.pat as usize];
            let Some(step) = pat.steps.get(it.step as usize) else {
                continue;
            };
            let (stay, advance) = match (step, seg) {
                (Step::Child(n), Seg::Name(k)) => (false, n == k),
                (Step::Child(_), _) => (false, false),
                (Step::AnyChild, _) => (false, true),
                (Step::Index(n), Seg::Index(k)) => (false, *n == k),
                (Step::Index(_), _) => (false, false),
                (Step::Descendant(n), Seg::Name(k)) => (true, n == k),
                (Step::Descendant(_), _) => (true, false),
                (Step::AnyDescendant, _) => (true, true),
            };
            if advance {
                if it.step as usize + 1 == pat.steps.len() {
                    match pat.target {
                        Target::Select { rule } => {
                            if accept.is_none_or(|(p, _)| it.pat < p) {
                                accept = Some((it.pat, rule));
                            }
                        }
                        Target::Record { group } => records.push(group),
                    }
                } else {
                    next.push(Item {
                        pat: it.pat,
                        step: it.step + 1,
                    });
                }
            }
            if stay {
                next.push(*it);
            }
        }
        if let Some((_, rule)) = accept {
            // Accept states are never shared: each carries its own path.
            let mut st = State::new(Kind::Accept { rule });
            st.path = path.map(Into::into);
            return self.new_state(st);
        }
        next.sort_unstable();
        next.dedup();
        records.sort_unstable();
        records.dedup();
        self.intern(next, records, path)
    }

    fn expand(&mut self, id: StateId, items: &[Item]) -> Result<(), String> {
        let base = self.states[id as usize].path.clone();
        let base = base.as_deref();
        let mut names: Vec<&str> = Vec::new();
        let mut indices: Vec<usize> = Vec::new();
        for it in items {
            match self.patterns[it.pat as usize].steps.get(it.step as usize) {
                Some(Step::Child(n) | Step::Descendant(n)) => names.push(n),
                Some(Step::Index(i)) => indices.push(*i),
                _ => {}
            }
        }
        names.sort_unstable();
        names.dedup();
        indices.sort_unstable();
        indices.dedup();
        let mut named = Vec::with_capacity(names.len());
        for n in &names {
            named.push(((*n).into(), self.follow(items, Seg::Name(n), base)?));
        }
        let other_name = self.follow(items, Seg::OtherName, base)?;
        let mut indexed = Vec::with_capacity(indices.len());
        for i in &indices {
            indexed.push((*i, self.follow(items, Seg::Index(*i), base)?));
        }
        let other_index = self.follow(items, Seg::OtherIndex, base)?;
        let mut folded: Vec<Box<str>> = names.iter().map(|n| fold(n).into()).collect();
        folded.sort_unstable();
        folded.dedup();
        let st = &mut self.states[id as usize];
        st.names = named;
        st.other_name = other_name;
        st.indices = indexed;
        st.other_index = other_index;
        st.folded = folded;
        Ok(())
    }
}

impl Automaton {
    pub fn state(&self, id: StateId) -> &State {
        // Ids come from this automaton's own transitions.
        &self.states[id as usize]
    }

    pub fn root(&self) -> StateId {
        if self.states.len() > ROOT as usize {
            ROOT
        } else {
            DEAD
        }
    }

    pub fn len(&self) -> usize {
        self.states.len()
    }

    pub fn is_empty(&self) -> bool {
        self.root() == DEAD
    }

    /// Accept states with the path every value reaching them has.
    pub fn accept_states(&self) -> impl Iterator<Item = (StateId, usize, Option<&str>)> {
        self.states
            .iter()
            .enumerate()
            .filter_map(|(i, s)| match s.kind {
                Kind::Accept { rule } => Some((i as StateId, rule, s.path.as_deref())),
                _ => None,
            })
    }

    /// Whether walking the concrete `steps` (names, `[*]` as any member or
    /// element) from the root passes an accept state.
    fn selects_on_the_way(&self, steps: &[Step]) -> bool {
        let mut frontier = vec![self.root()];
        for step in steps {
            let mut next = Vec::new();
            for s in frontier {
                if s == DEAD {
                    continue;
                }
                let st = self.state(s);
                match step {
                    Step::Child(n) => match st.by_name(n) {
                        Lookup::Named(t) | Lookup::Other(t) => next.push(t),
                    },
                    _ => {
                        next.push(st.other_name);
                        next.push(st.other_index);
                        next.extend(st.names.iter().map(|(_, t)| *t));
                        next.extend(st.indices.iter().map(|(_, t)| *t));
                    }
                }
            }
            if next
                .iter()
                .any(|t| matches!(self.state(*t).kind, Kind::Accept { .. }))
            {
                return true;
            }
            next.sort_unstable();
            next.dedup();
            frontier = next;
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn auto(sels: &[&str]) -> Automaton {
        let mut b = Builder::default();
        for (i, s) in sels.iter().enumerate() {
            b.select(&Selector::parse(s).unwrap(), i);
        }
        b.compile().unwrap()
    }

    fn walk(a: &Automaton, names: &[&str]) -> StateId {
        let mut s = a.root();
        for n in names {
            s = match n.parse::<usize>() {
                Ok(i) => a.state(s).by_index(i),
                Err(_) => match a.state(s).by_name(n) {
                    Lookup::Named(t) | Lookup::Other(t) => t,
                },
            };
        }
        s
    }

    #[test]
    fn concrete_selectors_have_fixed_paths_and_wildcards_do_not() {
        let a = auto(&[
            "$.payload.Orders[*].BuyerInfo.BuyerEmail",
            "$.payload.Addr.*",
            "$..Phone",
        ]);
        let s = walk(&a, &["payload", "Orders", "3", "BuyerInfo", "BuyerEmail"]);
        assert_eq!(a.state(s).kind, Kind::Accept { rule: 0 });
        assert_eq!(
            a.state(s).path.as_deref(),
            Some("$.payload.Orders[*].BuyerInfo.BuyerEmail")
        );
        let w = walk(&a, &["payload", "Addr", "City"]);
        assert_eq!(a.state(w).kind, Kind::Accept { rule: 1 });
        assert_eq!(a.state(w).path, None);
        let p = walk(&a, &["x", "y", "Phone"]);
        assert_eq!(a.state(p).kind, Kind::Accept { rule: 2 });
        assert_eq!(
            walk(&a, &["payload", "Nope", "Deeper"]),
            walk(&a, &["z", "z"])
        );
    }

    #[test]
    fn folding_catches_go_and_dotnet_spellings() {
        for (a, b) in [
            ("BuyerEmail", "buyeremail"),
            ("BuyerEmail", "BUYEREMAIL"),
            ("Sku", "\u{17F}ku"),
            ("Kind", "\u{212A}ind"),
            ("Email", "Ema\u{131}l"),
            ("Strasse", "Stra\u{DF}e"),
        ] {
            assert_eq!(fold(a), fold(b), "{a} {b}");
        }
        let a = auto(&["$.payload.BuyerEmail"]);
        let st = a.state(a.state(a.root()).by_name("payload").named().unwrap());
        assert!(st.folds_to_a_name("buyerEmail"));
        assert!(st.folds_to_a_name("BuyerEma\u{131}l"));
        assert!(!st.folds_to_a_name("BuyerName"));
    }

    #[test]
    fn a_descendant_with_more_steps_beside_concrete_selectors_stays_small() {
        // Found by fuzzing (fuzz target `policy`): `$..a.b` beside the
        // concrete selectors of a preset made a new state for every depth
        // of `a.a.a...` (the path was part of the state), ran for seconds
        // and refused the policy as "too many states".
        let mut sels: Vec<String> = crate::json::preset::selectors("sp-api-orders").unwrap();
        sels.push("$..ShippingAddress.Phone".into());
        let refs: Vec<&str> = sels.iter().map(String::as_str).collect();
        let a = auto(&refs);
        assert!(a.len() < 2_000, "{} states", a.len());
        let phone = refs.len() - 1;
        let deep = walk(&a, &["x", "ShippingAddress", "ShippingAddress", "Phone"]);
        assert_eq!(a.state(deep).kind, Kind::Accept { rule: phone });
        assert_eq!(
            walk(&a, &["x", "ShippingAddress", "ShippingAddress"]),
            walk(
                &a,
                &["x", "ShippingAddress", "ShippingAddress", "ShippingAddress"]
            ),
            "repeated names reach one state"
        );
        let email = walk(&a, &["payload", "BuyerInfo", "BuyerEmail"]);
        assert!(matches!(a.state(email).kind, Kind::Accept { .. }));
        assert_eq!(
            a.state(email).path.as_deref(),
            Some("$.payload.BuyerInfo.BuyerEmail"),
            "concrete selectors keep their fixed path"
        );
    }

    #[test]
    fn earlier_selector_wins_and_accept_takes_the_value_whole() {
        let a = auto(&["$.a.*", "$.a.b", "$.a.b.c"]);
        let s = walk(&a, &["a", "b"]);
        assert_eq!(a.state(s).kind, Kind::Accept { rule: 0 });
    }
}
