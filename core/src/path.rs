//! Request paths in one normal form, so that no spelling of a protected
//! path can dodge its route.
//!
//! Services and frameworks read a path in many ways: they remove dot
//! segments, merge slashes, percent-decode, fold case, strip `;params`,
//! trim trailing dots, treat `\` as `/`, decode twice. If dpp_guard matched
//! the raw `:path` and the service read it another way, a request could
//! reach a protected handler while dpp_guard saw an unprotected path.
//!
//! So the policy decides on one normal form ([`normalize`]):
//! 1. percent-encoded unreserved characters (`A-Z a-z 0-9 - . _ ~`) are
//!    decoded, either hex case (`%6f` is `o`, `%2E` is `.`); other escapes
//!    keep their meaning and get upper-case hex (RFC 3986 section 6.2.2.1-2);
//! 2. dot segments are removed (RFC 3986 section 5.2.4);
//! 3. runs of `/` become one `/` (as Envoy's `merge_slashes`).
//!
//! Spellings that have no one meaning are never normalised, only refused
//! ([`PathProblem`]): an encoded `/` or `\`, a raw `\`, a `;` (path
//! parameters), an escape that decodes to another escape (`%252e`, read as
//! `.` by a service that decodes twice), control or non-ASCII characters
//! (services fold Unicode case: .NET reads `ſ` as `S`), a bad escape, and a
//! segment ending in `.` or an encoded space (Windows servers drop them).
//! Route matching is then case-insensitive by default (ASCII), so `/ORDERS/`
//! is `/orders/` (see `policy::route`).

use std::borrow::Cow;
use std::fmt;

/// Why a path cannot be put in normal form.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathProblem {
    /// Not an origin-form path: it does not start with `/` (`*`, a full URL).
    NotOriginForm,
    /// `%2F` or `%5C` (either case): a separator to some services, data to others.
    EncodedSlash,
    /// A raw `\`: a separator to Windows servers and some frameworks.
    Backslash,
    /// `;` raw or encoded: path parameters, stripped by Java servers
    /// (`/orders;x=1/v0` is `/orders/v0` to Tomcat).
    PathParameter,
    /// An escape that decodes to another escape (`%252e`): services that
    /// decode twice read it as a different character.
    DoubleEncoded,
    /// A control or non-ASCII character, raw or encoded: case folding and
    /// Unicode normalisation in services map some of them to ASCII.
    ControlOrNonAscii,
    /// `%` not followed by two hex digits.
    BadEscape,
    /// A segment ending in `.` or an encoded space, which Windows servers
    /// (IIS, ASP.NET) remove: `/orders./v0` is `/orders/v0` to them.
    TrailingDotOrSpace,
}

impl PathProblem {
    /// Short name for events and replies (never the path itself).
    pub fn code(self) -> &'static str {
        match self {
            PathProblem::NotOriginForm => "not_origin_form",
            PathProblem::EncodedSlash => "encoded_slash",
            PathProblem::Backslash => "backslash",
            PathProblem::PathParameter => "path_parameter",
            PathProblem::DoubleEncoded => "double_encoded",
            PathProblem::ControlOrNonAscii => "control_or_non_ascii",
            PathProblem::BadEscape => "bad_escape",
            PathProblem::TrailingDotOrSpace => "trailing_dot_or_space",
        }
    }
}

impl fmt::Display for PathProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

/// A path (query excluded) in normal form, and whether the request spelled
/// it that way.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NormalPath<'a> {
    path: Cow<'a, str>,
    /// The request's spelling differed from the normal form by more than
    /// the hex case of escapes.
    changed: bool,
}

impl<'a> NormalPath<'a> {
    pub fn as_str(&self) -> &str {
        &self.path
    }

    /// True when the request did not spell its path in normal form: a
    /// service may read it differently from the policy.
    pub fn changed(&self) -> bool {
        self.changed
    }
}

/// The path part of a request target: up to the first `?` or `#`.
pub fn split_query(target: &str) -> (&str, &str) {
    match target.find(['?', '#']) {
        Some(i) => (
            target.get(..i).unwrap_or(target),
            target.get(i..).unwrap_or(""),
        ),
        None => (target, ""),
    }
}

/// Puts `path` (no query string) in normal form, or says why it cannot.
pub fn normalize(path: &str) -> Result<NormalPath<'_>, PathProblem> {
    if !path.starts_with('/') {
        return Err(PathProblem::NotOriginForm);
    }
    let decoded = decode_unreserved(path)?;
    let normal = merge_slashes(&remove_dot_segments(&decoded));
    check_segments(&normal)?;
    let changed = normal != upper_hex(path);
    let path = if normal == path {
        Cow::Borrowed(path)
    } else {
        Cow::Owned(normal)
    };
    Ok(NormalPath { path, changed })
}

fn is_unreserved(c: u8) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, b'-' | b'.' | b'_' | b'~')
}

fn hex_value(c: u8) -> Option<u8> {
    (c as char).to_digit(16).and_then(|d| u8::try_from(d).ok())
}

const HEX: &[u8; 16] = b"0123456789ABCDEF";

/// Step 1: decodes escapes of unreserved characters, upper-cases the hex of
/// the others, and refuses the characters that have no one reading.
fn decode_unreserved(path: &str) -> Result<String, PathProblem> {
    let b = path.as_bytes();
    let mut out = String::with_capacity(b.len());
    let mut i = 0;
    while let Some(&c) = b.get(i) {
        match c {
            b'%' => {
                let hi = b.get(i + 1).copied().and_then(hex_value);
                let lo = b.get(i + 2).copied().and_then(hex_value);
                let (Some(hi), Some(lo)) = (hi, lo) else {
                    return Err(PathProblem::BadEscape);
                };
                let v = hi * 16 + lo;
                match v {
                    b'/' | b'\\' => return Err(PathProblem::EncodedSlash),
                    b';' => return Err(PathProblem::PathParameter),
                    v if !(0x20..0x7f).contains(&v) => return Err(PathProblem::ControlOrNonAscii),
                    v if is_unreserved(v) => out.push(char::from(v)),
                    v => {
                        out.push('%');
                        out.push(char::from(HEX[usize::from(v >> 4)]));
                        out.push(char::from(HEX[usize::from(v & 15)]));
                    }
                }
                i += 3;
            }
            b'\\' => return Err(PathProblem::Backslash),
            b';' => return Err(PathProblem::PathParameter),
            c if !(0x21..0x7f).contains(&c) => return Err(PathProblem::ControlOrNonAscii),
            c => {
                out.push(char::from(c));
                i += 1;
            }
        }
    }
    Ok(out)
}

/// Step 2: RFC 3986 section 5.2.4 on an absolute path, by segments: `.`
/// is dropped, `..` drops the segment before it (never above the root), and
/// a path ending in a dot segment ends in `/`.
fn remove_dot_segments(path: &str) -> String {
    let mut kept: Vec<&str> = Vec::new();
    let mut trailing_slash = false;
    // The path starts with '/': the first split item is the empty string
    // before it.
    for seg in path.split('/').skip(1) {
        trailing_slash = false;
        match seg {
            "." => trailing_slash = true,
            ".." => {
                kept.pop();
                trailing_slash = true;
            }
            s => kept.push(s),
        }
    }
    let mut out = String::with_capacity(path.len());
    for seg in &kept {
        out.push('/');
        out.push_str(seg);
    }
    if trailing_slash || out.is_empty() {
        out.push('/');
    }
    out
}

/// Step 3: every run of `/` becomes one `/`.
fn merge_slashes(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    for c in path.chars() {
        if c == '/' && out.ends_with('/') {
            continue;
        }
        out.push(c);
    }
    out
}

/// Refusals that only show once the path is in normal form.
fn check_segments(normal: &str) -> Result<(), PathProblem> {
    for seg in normal.split('/') {
        if seg.ends_with('.') || seg.ends_with("%20") {
            return Err(PathProblem::TrailingDotOrSpace);
        }
    }
    // `%25` followed by two hex digits is a second layer of encoding.
    let b = normal.as_bytes();
    for (i, w) in b.windows(3).enumerate() {
        if w == b"%25"
            && b.get(i + 3).copied().and_then(hex_value).is_some()
            && b.get(i + 4).copied().and_then(hex_value).is_some()
        {
            return Err(PathProblem::DoubleEncoded);
        }
    }
    Ok(())
}

/// `path` with the hex digits of its escapes upper-cased (the only
/// difference from the normal form that is not a change of meaning).
fn upper_hex(path: &str) -> Cow<'_, str> {
    if !path.contains('%') {
        return Cow::Borrowed(path);
    }
    let mut out = String::with_capacity(path.len());
    let mut after_percent = 0;
    for c in path.chars() {
        if c == '%' {
            after_percent = 2;
            out.push(c);
        } else if after_percent > 0 {
            after_percent -= 1;
            out.push(c.to_ascii_uppercase());
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests;
