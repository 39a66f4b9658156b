//! JSON without a tree: a validating single-pass scanner that finds the
//! byte spans of selected values and splices replacements in.
//!
//! Why not `serde_json::Value`: parsing into a tree and serializing back
//! reorders keys, respells numbers and costs two full passes plus an
//! allocation per node. The splice copies every unselected byte as it was
//! (key order, whitespace, number spelling), which keeps signatures and
//! diffs meaningful, and only selected values are touched.

pub mod preset;
pub mod selector;

use std::fmt;

use selector::{Advance, Segment, SelectorSet, State};

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
}

/// Rewrites `body`, replacing each selected value by what `replace` writes
/// into the output buffer. Returns `Ok(None)` when nothing was selected
/// (the body can pass as it is). The whole body is validated as JSON.
pub fn splice<E, F>(
    body: &[u8],
    selectors: &SelectorSet,
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
        selectors,
        arena: Vec::with_capacity(selectors.selectors.len() * 4),
        path: String::with_capacity(128),
        out: Vec::new(),
        last: 0,
        replaced: 0,
        replace: &mut replace,
    };
    w.s.ws();
    let mut root = Vec::new();
    selectors.root_states(&mut root);
    w.arena = root;
    let to = w.arena.len();
    w.path.push('$');
    w.value(0, to, 0)?;
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

/// Either the body is not JSON, or the callback refused a value.
#[derive(Debug)]
pub enum SpliceError<E> {
    Json(JsonError),
    Value(E),
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

struct Walker<'a, 'f, E, F>
where
    F: FnMut(&Selected<'_>, &mut Vec<u8>) -> Result<(), E>,
{
    s: Scanner<'a>,
    selectors: &'a SelectorSet,
    arena: Vec<State>,
    path: String,
    out: Vec<u8>,
    last: usize,
    replaced: usize,
    replace: &'f mut F,
}

impl<E, F> Walker<'_, '_, E, F>
where
    F: FnMut(&Selected<'_>, &mut Vec<u8>) -> Result<(), E>,
{
    /// Walks the value at the cursor whose live selector states are
    /// `arena[from..to]`.
    fn value(&mut self, from: usize, to: usize, depth: usize) -> Result<(), SpliceError<E>> {
        match self.s.peek() {
            Some(b'{') => {
                if depth >= MAX_DEPTH {
                    return Err(self.s.err("nested too deeply").into());
                }
                self.s.i += 1;
                self.s.ws();
                if self.s.peek() == Some(b'}') {
                    self.s.i += 1;
                    return Ok(());
                }
                loop {
                    self.s.ws();
                    let b = self.s.b;
                    let kstart = self.s.i;
                    let escaped = self.s.string()?;
                    let kend = self.s.i;
                    self.s.ws();
                    self.s.expect(b':', "expected `:`")?;
                    self.s.ws();
                    let decoded: String;
                    let key: &str = if escaped {
                        decoded = b
                            .get(kstart..kend)
                            .and_then(|raw| serde_json::from_slice::<String>(raw).ok())
                            .ok_or(SpliceError::Json(JsonError {
                                offset: kstart,
                                problem: "member name escape that does not decode",
                            }))?;
                        &decoded
                    } else {
                        // UTF-8 was validated for the whole body.
                        b.get(kstart + 1..kend - 1)
                            .and_then(|raw| std::str::from_utf8(raw).ok())
                            .unwrap_or_default()
                    };
                    self.child(from, to, Segment::Key(key), depth)?;
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
                    self.child(from, to, Segment::Index(index), depth)?;
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

    /// The member or element at the cursor, reached by `seg`.
    fn child(
        &mut self,
        from: usize,
        to: usize,
        seg: Segment<'_>,
        depth: usize,
    ) -> Result<(), SpliceError<E>> {
        if from == to {
            return self.s.skip_value(depth + 1).map_err(Into::into);
        }
        let base = self.arena.len();
        let advance = self.selectors.advance(&mut self.arena, from, to, seg);
        let path_len = self.path.len();
        push_segment(&mut self.path, seg);
        let result = match advance {
            Advance::Skip => self.s.skip_value(depth + 1).map_err(Into::into),
            Advance::Descend => {
                let end = self.arena.len();
                self.value(base, end, depth + 1)
            }
            Advance::Selected(rule) => {
                let start = self.s.i;
                self.s.skip_value(depth + 1)?;
                let end = self.s.i;
                let b = self.s.b;
                self.out
                    .extend_from_slice(b.get(self.last..start).unwrap_or_default());
                let selected = Selected {
                    path: &self.path,
                    raw: b.get(start..end).unwrap_or_default(),
                    rule,
                };
                (self.replace)(&selected, &mut self.out).map_err(SpliceError::Value)?;
                self.last = end;
                self.replaced += 1;
                Ok(())
            }
        };
        self.arena.truncate(base);
        self.path.truncate(path_len);
        result
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
