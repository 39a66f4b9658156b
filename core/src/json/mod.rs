//! JSON without a tree: a validating single-pass scanner that finds the
//! byte spans of selected values and splices replacements in.
//!
//! Why not `serde_json::Value`: parsing into a tree and serializing back
//! reorders keys, respells numbers and costs two full passes plus an
//! allocation per node. The splice copies every unselected byte as it was
//! (key order, whitespace, number spelling), which keeps signatures and
//! diffs meaningful, and only selected values are touched.

pub mod automaton;
pub mod preset;
pub mod selector;

use std::fmt;

use automaton::Kind;
pub use automaton::{Automaton, StateId};
use selector::Segment;

/// Containers nested deeper than this are refused (bounded recursion).
pub const MAX_DEPTH: usize = 128;

/// Why a body is not acceptable JSON. Carries an offset, never content.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JsonError {
    pub offset: usize,
    pub problem: &'static str,
}

impl fmt::Display for JsonError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} at byte {}", self.problem, self.offset)
    }
}

impl std::error::Error for JsonError {}

/// A selected value handed to the rewrite callback.
pub struct Selected<'a> {
    /// Canonical path of the value: `$.a.b`, array indexes as `[*]`,
    /// names that are not identifiers as `["name"]` (JSON string escaping).
    pub path: &'a str,
    /// The value's exact bytes in the body.
    pub raw: &'a [u8],
    /// Index of the rule whose selector matched first.
    pub rule: usize,
    /// The automaton state that selected it: data computed per position at
    /// configure time (see [`Automaton::accept_states`]) is keyed by it.
    pub state: StateId,
    /// The context fields of the nearest record of the rule around the
    /// value (empty when the rule binds none, or no record encloses it).
    pub bound: Bound<'a>,
}

/// Context-field values of one record: `(name, canonical JSON value)`.
#[derive(Clone, Copy)]
pub struct Bound<'a> {
    names: &'a [Box<str>],
    ranges: &'a [(usize, usize)],
    arena: &'a [u8],
}

impl<'a> Bound<'a> {
    pub const NONE: Bound<'static> = Bound {
        names: &[],
        ranges: &[],
        arena: &[],
    };

    /// A record's bound fields given directly: `names[i]` has the canonical
    /// value `arena[ranges[i].0..ranges[i].1]` (test vectors, tools that
    /// seal one value outside a body).
    pub fn from_parts(
        names: &'a [Box<str>],
        ranges: &'a [(usize, usize)],
        arena: &'a [u8],
    ) -> Bound<'a> {
        let n = names.len().min(ranges.len());
        Bound {
            names: &names[..n],
            ranges: &ranges[..n],
            arena,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }

    pub fn len(&self) -> usize {
        self.names.len()
    }

    pub fn fields(&self) -> impl Iterator<Item = (&'a str, &'a [u8])> + 'a {
        let arena = self.arena;
        self.names
            .iter()
            .zip(self.ranges)
            .map(move |(n, (a, b))| (&**n, arena.get(*a..*b).unwrap_or_default()))
    }
}

/// Rewrites `body`, replacing each selected value by what `replace` writes
/// into the output buffer. Returns `Ok(None)` when nothing was selected
/// (the body can pass as it is). The whole body is validated as JSON.
///
/// Fails closed, besides malformed JSON, on a member whose name equals a
/// name the selectors follow under case folding without being equal to it
/// ([`SpliceError::AmbiguousMember`]), and on a selected value whose record
/// lacks a context field ([`SpliceError::MissingContextField`]).
pub fn splice<E, F>(
    body: &[u8],
    selectors: &Automaton,
    mut replace: F,
) -> Result<Option<Vec<u8>>, SpliceError<E>>
where
    F: FnMut(&Selected<'_>, &mut Vec<u8>) -> Result<(), E>,
{
    if std::str::from_utf8(body).is_err() {
        return Err(SpliceError::Json(JsonError {
            offset: 0,
            problem: "body is not UTF-8",
        }));
    }
    let mut w = Walker {
        s: Scanner { b: body, i: 0 },
        auto: selectors,
        path: String::with_capacity(128),
        segs: Vec::with_capacity(16),
        // Envelopes are longer than the values they replace; one
        // reservation for the common case instead of repeated doubling.
        out: Vec::with_capacity(body.len() + body.len() / 2),
        last: 0,
        replaced: 0,
        replace: &mut replace,
        frames: Vec::new(),
        arena: Vec::new(),
        arena_ranges: Vec::new(),
    };
    w.s.ws();
    let root = selectors.root();
    if root == automaton::DEAD {
        w.s.skip_value(0)?;
    } else {
        w.value(root, 0)?;
    }
    w.s.ws();
    if w.s.i != body.len() {
        return Err(w.s.err("trailing characters after the JSON value").into());
    }
    if w.replaced == 0 {
        return Ok(None);
    }
    w.out.extend_from_slice(&body[w.last..]);
    Ok(Some(w.out))
}

/// Why a body was not rewritten.
#[derive(Debug)]
pub enum SpliceError<E> {
    /// Not JSON.
    Json(JsonError),
    /// The callback refused a value.
    Value(E),
    /// A member name equals a selected (or context-field) name under case
    /// folding but not exactly, or a context field appears twice: readers
    /// that fold names would bind it to the protected field.
    AmbiguousMember { offset: usize },
    /// A value was selected inside a record that lacks one of the rule's
    /// context fields.
    MissingContextField { offset: usize },
}

impl<E> From<JsonError> for SpliceError<E> {
    fn from(e: JsonError) -> Self {
        SpliceError::Json(e)
    }
}

/// Validates that `bytes` is exactly one JSON value (surrounding white
/// space allowed).
pub fn validate(bytes: &[u8]) -> Result<(), JsonError> {
    if std::str::from_utf8(bytes).is_err() {
        return Err(JsonError {
            offset: 0,
            problem: "not UTF-8",
        });
    }
    let mut s = Scanner { b: bytes, i: 0 };
    s.ws();
    s.skip_value(0)?;
    s.ws();
    if s.i != bytes.len() {
        return Err(s.err("trailing characters after the JSON value"));
    }
    Ok(())
}

/// A canonical spelling of one JSON value: no insignificant white space,
/// strings re-escaped minimally (as serde_json writes them), numbers and
/// member order kept as written. Equal values from one producer give equal
/// bytes, which is what deterministic encryption and blind indexes need.
pub fn canonical(raw: &[u8], out: &mut Vec<u8>) -> Result<(), JsonError> {
    validate(raw)?;
    let mut s = Scanner { b: raw, i: 0 };
    s.ws();
    canon_value(&mut s, out)
}

fn canon_value(s: &mut Scanner<'_>, out: &mut Vec<u8>) -> Result<(), JsonError> {
    // `raw` was validated: the structure is known good.
    match s.peek() {
        Some(b'{') | Some(b'[') => {
            let close = if s.peek() == Some(b'{') { b'}' } else { b']' };
            out.push(s.b[s.i]);
            s.i += 1;
            s.ws();
            if s.peek() == Some(close) {
                s.i += 1;
                out.push(close);
                return Ok(());
            }
            loop {
                s.ws();
                if close == b'}' {
                    canon_string(s, out)?;
                    s.ws();
                    s.i += 1; // ':'
                    out.push(b':');
                    s.ws();
                }
                canon_value(s, out)?;
                s.ws();
                match s.peek() {
                    Some(b',') => {
                        s.i += 1;
                        out.push(b',');
                    }
                    _ => {
                        s.i += 1;
                        out.push(close);
                        return Ok(());
                    }
                }
            }
        }
        Some(b'"') => canon_string(s, out),
        _ => {
            let start = s.i;
            s.skip_value(0)?;
            out.extend_from_slice(&s.b[start..s.i]);
            Ok(())
        }
    }
}

fn canon_string(s: &mut Scanner<'_>, out: &mut Vec<u8>) -> Result<(), JsonError> {
    let start = s.i;
    let escaped = s.string()?;
    let raw = &s.b[start..s.i];
    if !escaped {
        out.extend_from_slice(raw);
        return Ok(());
    }
    let text: String = serde_json::from_slice(raw).map_err(|_| JsonError {
        offset: start,
        problem: "string escape that does not decode (lone surrogate)",
    })?;
    serde_json::to_writer(&mut *out, &text).map_err(|_| JsonError {
        offset: start,
        problem: "string does not re-encode",
    })
}

struct Scanner<'a> {
    b: &'a [u8],
    i: usize,
}

impl<'a> Scanner<'a> {
    fn err(&self, problem: &'static str) -> JsonError {
        JsonError {
            offset: self.i,
            problem,
        }
    }

    #[inline]
    fn peek(&self) -> Option<u8> {
        self.b.get(self.i).copied()
    }

    #[inline]
    fn ws(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.peek() {
            self.i += 1;
        }
    }

    fn expect(&mut self, c: u8, problem: &'static str) -> Result<(), JsonError> {
        if self.peek() == Some(c) {
            self.i += 1;
            Ok(())
        } else {
            Err(self.err(problem))
        }
    }

    /// Skips one string token; returns whether it holds escapes.
    fn string(&mut self) -> Result<bool, JsonError> {
        self.expect(b'"', "expected a string")?;
        let mut escaped = false;
        loop {
            // Fast path over plain bytes (UTF-8 was validated up front).
            let rest = self.b.get(self.i..).unwrap_or_default();
            let n = rest
                .iter()
                .position(|&c| c == b'"' || c == b'\\' || c < 0x20)
                .ok_or(JsonError {
                    offset: self.b.len(),
                    problem: "unterminated string",
                })?;
            self.i += n;
            match self.peek() {
                Some(b'"') => {
                    self.i += 1;
                    return Ok(escaped);
                }
                Some(b'\\') => {
                    escaped = true;
                    self.i += 1;
                    match self.peek() {
                        Some(b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't') => self.i += 1,
                        Some(b'u') => {
                            self.i += 1;
                            // A surrogate must come as a high-low pair: a
                            // lone one is grammatical JSON but no Unicode
                            // string (serde_json refuses it, and so could
                            // the upstream). Refused here, so every body
                            // that passes the scan also decodes, and a
                            // canonical form always exists.
                            match self.hex4()? {
                                0xD800..=0xDBFF => {
                                    if self.b.get(self.i..self.i + 2) != Some(&b"\\u"[..]) {
                                        return Err(self.err("lone surrogate in \\u escape"));
                                    }
                                    self.i += 2;
                                    if !(0xDC00..=0xDFFF).contains(&self.hex4()?) {
                                        return Err(self.err("lone surrogate in \\u escape"));
                                    }
                                }
                                0xDC00..=0xDFFF => {
                                    return Err(self.err("lone surrogate in \\u escape"))
                                }
                                _ => {}
                            }
                        }
                        _ => return Err(self.err("bad escape")),
                    }
                }
                _ => return Err(self.err("control character in string")),
            }
        }
    }

    /// Four hex digits of a `\u` escape, as a UTF-16 code unit.
    fn hex4(&mut self) -> Result<u16, JsonError> {
        let mut unit = 0u16;
        for _ in 0..4 {
            let digit = self
                .peek()
                .and_then(|c| (c as char).to_digit(16))
                .ok_or_else(|| self.err("bad \\u escape"))?;
            unit = unit << 4 | digit as u16;
            self.i += 1;
        }
        Ok(unit)
    }

    fn digits(&mut self) -> usize {
        let start = self.i;
        while self.peek().is_some_and(|c| c.is_ascii_digit()) {
            self.i += 1;
        }
        self.i - start
    }

    fn number(&mut self) -> Result<(), JsonError> {
        if self.peek() == Some(b'-') {
            self.i += 1;
        }
        match self.peek() {
            Some(b'0') => self.i += 1,
            Some(b'1'..=b'9') => {
                self.digits();
            }
            _ => return Err(self.err("bad number")),
        }
        if self.peek() == Some(b'.') {
            self.i += 1;
            if self.digits() == 0 {
                return Err(self.err("bad number fraction"));
            }
        }
        if let Some(b'e' | b'E') = self.peek() {
            self.i += 1;
            if let Some(b'+' | b'-') = self.peek() {
                self.i += 1;
            }
            if self.digits() == 0 {
                return Err(self.err("bad number exponent"));
            }
        }
        Ok(())
    }

    fn literal(&mut self, word: &'static [u8]) -> Result<(), JsonError> {
        if self.b.get(self.i..self.i + word.len()) == Some(word) {
            self.i += word.len();
            Ok(())
        } else {
            Err(self.err("unexpected token"))
        }
    }

    /// Skips (and validates) one value starting at the current byte.
    fn skip_value(&mut self, depth: usize) -> Result<(), JsonError> {
        match self.peek() {
            Some(b'"') => self.string().map(|_| ()),
            Some(b'{') => {
                if depth >= MAX_DEPTH {
                    return Err(self.err("nested too deeply"));
                }
                self.i += 1;
                self.ws();
                if self.peek() == Some(b'}') {
                    self.i += 1;
                    return Ok(());
                }
                loop {
                    self.ws();
                    self.string()?;
                    self.ws();
                    self.expect(b':', "expected `:`")?;
                    self.ws();
                    self.skip_value(depth + 1)?;
                    self.ws();
                    match self.peek() {
                        Some(b',') => self.i += 1,
                        Some(b'}') => {
                            self.i += 1;
                            return Ok(());
                        }
                        _ => return Err(self.err("expected `,` or `}`")),
                    }
                }
            }
            Some(b'[') => {
                if depth >= MAX_DEPTH {
                    return Err(self.err("nested too deeply"));
                }
                self.i += 1;
                self.ws();
                if self.peek() == Some(b']') {
                    self.i += 1;
                    return Ok(());
                }
                loop {
                    self.ws();
                    self.skip_value(depth + 1)?;
                    self.ws();
                    match self.peek() {
                        Some(b',') => self.i += 1,
                        Some(b']') => {
                            self.i += 1;
                            return Ok(());
                        }
                        _ => return Err(self.err("expected `,` or `]`")),
                    }
                }
            }
            Some(b't') => self.literal(b"true"),
            Some(b'f') => self.literal(b"false"),
            Some(b'n') => self.literal(b"null"),
            Some(b'-' | b'0'..=b'9') => self.number(),
            None => Err(self.err("unexpected end of input")),
            Some(_) => Err(self.err("unexpected character")),
        }
    }
}

/// One step from the root to the cursor (array positions are not part of
/// canonical paths, so an element is only "an element").
enum PathSeg<'a> {
    Key(std::borrow::Cow<'a, str>),
    Index,
}

impl PathSeg<'_> {
    fn as_segment(&self) -> Segment<'_> {
        match self {
            PathSeg::Key(k) => Segment::Key(k),
            PathSeg::Index => Segment::Index(0),
        }
    }
}

/// One record around the cursor: its context group and where the values
/// of its fields are in the arena (`None` when the record lacks one).
struct Frame {
    group: u32,
    start: usize,
    missing: bool,
}

struct Walker<'a, 'f, E, F>
where
    F: FnMut(&Selected<'_>, &mut Vec<u8>) -> Result<(), E>,
{
    s: Scanner<'a>,
    auto: &'a Automaton,
    /// The canonical path, built only for a selected value whose state has
    /// no fixed path (member wildcards, descendants), from `segs`.
    path: String,
    /// The members and elements from the root to the cursor, in live states.
    segs: Vec<PathSeg<'a>>,
    out: Vec<u8>,
    last: usize,
    replaced: usize,
    replace: &'f mut F,
    frames: Vec<Frame>,
    /// Canonical values of the records' fields, and their ranges: for each
    /// frame, one range per name of its group, from `Frame::start`
    /// (`usize::MAX` while not found).
    arena: Vec<u8>,
    arena_ranges: Vec<(usize, usize)>,
}

impl<'a, E, F> Walker<'a, '_, E, F>
where
    F: FnMut(&Selected<'_>, &mut Vec<u8>) -> Result<(), E>,
{
    /// The member name at the cursor (a string token), unescaped.
    fn member_name(&mut self) -> Result<std::borrow::Cow<'a, str>, SpliceError<E>> {
        let b = self.s.b;
        let kstart = self.s.i;
        let escaped = self.s.string()?;
        let kend = self.s.i;
        if escaped {
            b.get(kstart..kend)
                .and_then(|raw| serde_json::from_slice::<String>(raw).ok())
                .map(std::borrow::Cow::Owned)
                .ok_or(SpliceError::Json(JsonError {
                    offset: kstart,
                    problem: "member name escape that does not decode",
                }))
        } else {
            // UTF-8 was validated for the whole body.
            Ok(std::borrow::Cow::Borrowed(
                b.get(kstart + 1..kend - 1)
                    .and_then(|raw| std::str::from_utf8(raw).ok())
                    .unwrap_or_default(),
            ))
        }
    }

    /// Reads the context fields of the record object at the cursor (the
    /// cursor stays where it was): one frame per context group of `state`.
    fn open_records(&mut self, state: StateId) -> Result<(), SpliceError<E>> {
        let auto = self.auto;
        let groups = &auto.state(state).records;
        let begin = self.s.i;
        let first_frame = self.frames.len();
        for g in groups {
            let start = self.arena_ranges.len();
            let n = auto.groups[*g as usize].names.len();
            self.arena_ranges
                .extend(std::iter::repeat_n((usize::MAX, usize::MAX), n));
            self.frames.push(Frame {
                group: *g,
                start,
                missing: false,
            });
        }
        // Validated later by the walk itself; here only the members are read.
        self.s.i += 1;
        self.s.ws();
        if self.s.peek() != Some(b'}') {
            loop {
                self.s.ws();
                let at = self.s.i;
                let name = self.member_name()?;
                self.s.ws();
                self.s.expect(b':', "expected `:`")?;
                self.s.ws();
                let vstart = self.s.i;
                self.s.skip_value(1)?;
                let vend = self.s.i;
                for f in first_frame..self.frames.len() {
                    let group = &auto.groups[self.frames[f].group as usize];
                    for (k, field) in group.names.iter().enumerate() {
                        let slot = self.frames[f].start + k;
                        if **field == *name {
                            if self.arena_ranges[slot].0 != usize::MAX {
                                return Err(SpliceError::AmbiguousMember { offset: at });
                            }
                            let a = self.arena.len();
                            canonical(&self.s.b[vstart..vend], &mut self.arena)?;
                            self.arena_ranges[slot] = (a, self.arena.len());
                        } else if group.folds_to(k, &name) {
                            return Err(SpliceError::AmbiguousMember { offset: at });
                        }
                    }
                }
                self.s.ws();
                match self.s.peek() {
                    Some(b',') => self.s.i += 1,
                    Some(b'}') => break,
                    _ => return Err(self.s.err("expected `,` or `}`").into()),
                }
            }
        }
        for f in &mut self.frames[first_frame..] {
            let n = auto.groups[f.group as usize].names.len();
            f.missing = self.arena_ranges[f.start..f.start + n]
                .iter()
                .any(|r| r.0 == usize::MAX);
        }
        self.s.i = begin;
        Ok(())
    }

    fn close_records(&mut self, from: usize) {
        if let Some(f) = self.frames.get(from) {
            self.arena_ranges.truncate(f.start);
        }
        self.frames.truncate(from);
        if self.frames.is_empty() {
            // Context values are not secret (they stay in clear in the
            // body), so no zeroizing; the arena is reused for the next record.
            self.arena.clear();
        }
    }

    /// Walks the value at the cursor, which is at automaton state `state`
    /// (live: some selector may match below).
    fn value(&mut self, state: StateId, depth: usize) -> Result<(), SpliceError<E>> {
        let auto = self.auto;
        match self.s.peek() {
            Some(b'{') => {
                if depth >= MAX_DEPTH {
                    return Err(self.s.err("nested too deeply").into());
                }
                let frames = self.frames.len();
                if !auto.state(state).records.is_empty() {
                    self.open_records(state)?;
                }
                let result = self.object(state, depth);
                self.close_records(frames);
                result
            }
            Some(b'[') => {
                if depth >= MAX_DEPTH {
                    return Err(self.s.err("nested too deeply").into());
                }
                self.s.i += 1;
                self.s.ws();
                if self.s.peek() == Some(b']') {
                    self.s.i += 1;
                    return Ok(());
                }
                let mut index = 0usize;
                loop {
                    self.s.ws();
                    let next = auto.state(state).by_index(index);
                    self.child(next, PathSeg::Index, depth)?;
                    index += 1;
                    self.s.ws();
                    match self.s.peek() {
                        Some(b',') => self.s.i += 1,
                        Some(b']') => {
                            self.s.i += 1;
                            return Ok(());
                        }
                        _ => return Err(self.s.err("expected `,` or `]`").into()),
                    }
                }
            }
            _ => self.s.skip_value(depth).map_err(Into::into),
        }
    }

    fn object(&mut self, state: StateId, depth: usize) -> Result<(), SpliceError<E>> {
        let auto = self.auto;
        let st = auto.state(state);
        self.s.i += 1;
        self.s.ws();
        if self.s.peek() == Some(b'}') {
            self.s.i += 1;
            return Ok(());
        }
        loop {
            self.s.ws();
            let at = self.s.i;
            let name = self.member_name()?;
            let next = match st.by_name(&name) {
                automaton::Lookup::Named(t) => t,
                automaton::Lookup::Other(t) => {
                    if st.folds_to_a_name(&name) {
                        return Err(SpliceError::AmbiguousMember { offset: at });
                    }
                    t
                }
            };
            self.s.ws();
            self.s.expect(b':', "expected `:`")?;
            self.s.ws();
            if next == automaton::DEAD {
                self.s.skip_value(depth + 1)?;
            } else {
                self.child(next, PathSeg::Key(name), depth)?;
            }
            self.s.ws();
            match self.s.peek() {
                Some(b',') => self.s.i += 1,
                Some(b'}') => {
                    self.s.i += 1;
                    return Ok(());
                }
                _ => return Err(self.s.err("expected `,` or `}`").into()),
            }
        }
    }

    /// The member or element at the cursor, reached by `seg` into `next`.
    fn child(
        &mut self,
        next: StateId,
        seg: PathSeg<'a>,
        depth: usize,
    ) -> Result<(), SpliceError<E>> {
        let auto = self.auto;
        let st = auto.state(next);
        match st.kind {
            Kind::Dead => self.s.skip_value(depth + 1).map_err(Into::into),
            Kind::Live => {
                self.segs.push(seg);
                let r = self.value(next, depth + 1);
                self.segs.pop();
                r
            }
            Kind::Accept { rule } => {
                let start = self.s.i;
                self.s.skip_value(depth + 1)?;
                let end = self.s.i;
                let b = self.s.b;
                // The nearest record of this rule around the value.
                let frame = self
                    .frames
                    .iter()
                    .rev()
                    .find(|f| auto.groups[f.group as usize].rule == rule);
                let bound = match frame {
                    None => Bound::NONE,
                    Some(f) if f.missing => {
                        return Err(SpliceError::MissingContextField { offset: start })
                    }
                    Some(f) => {
                        let names = &auto.groups[f.group as usize].names;
                        Bound {
                            names,
                            ranges: &self.arena_ranges[f.start..f.start + names.len()],
                            arena: &self.arena,
                        }
                    }
                };
                let path: &str = match &st.path {
                    Some(p) => p,
                    None => {
                        self.path.clear();
                        self.path.push('$');
                        for s in self.segs.iter().chain([&seg]) {
                            push_segment(&mut self.path, s.as_segment());
                        }
                        &self.path
                    }
                };
                self.out
                    .extend_from_slice(b.get(self.last..start).unwrap_or_default());
                let selected = Selected {
                    path,
                    raw: b.get(start..end).unwrap_or_default(),
                    rule,
                    state: next,
                    bound,
                };
                (self.replace)(&selected, &mut self.out).map_err(SpliceError::Value)?;
                self.last = end;
                self.replaced += 1;
                Ok(())
            }
        }
    }
}

/// Appends the canonical form of one segment to a path.
pub fn push_segment(path: &mut String, seg: Segment<'_>) {
    match seg {
        // Array positions are not part of the canonical path: an element
        // may move within its array (sorting, filtering by an intermediary)
        // and still decrypt, and deterministic mode gives equal envelopes
        // for equal values in every element (equality joins).
        Segment::Index(_) => path.push_str("[*]"),
        Segment::Key(k) => {
            let ident = k
                .bytes()
                .next()
                .is_some_and(|c| c.is_ascii_alphabetic() || c == b'_')
                && k.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'_');
            if ident {
                path.push('.');
                path.push_str(k);
            } else {
                path.push('[');
                // Serializing a str cannot fail.
                path.push_str(&serde_json::to_string(k).unwrap_or_default());
                path.push(']');
            }
        }
    }
}

#[cfg(test)]
mod tests;
