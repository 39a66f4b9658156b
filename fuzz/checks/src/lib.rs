//! The properties dpp-guard's fuzz targets check, as plain functions.
//!
//! Each `pub fn <target>(data: &[u8])` panics when a property fails and
//! returns otherwise. The cargo-fuzz binaries in `fuzz/fuzz_targets/` are
//! one line each around these functions (nightly, libFuzzer); the test
//! `tests/replay.rs` feeds every committed corpus file through the same
//! functions on stable, so `make test` keeps every input the fuzzer ever
//! kept (and every crash it found) passing without a nightly toolchain.
//!
//! Inputs are raw bytes. Structured targets read a few header bytes with
//! [`Input`] and take the rest as the body or text under test, so seeds
//! made from the test data are a short header plus a real document.

pub mod body;
pub mod chain;
pub mod envelope;
pub mod fixtures;
pub mod path;
pub mod policy;
pub mod scrub;
pub mod splice;
pub mod stream;

/// A target's check: returns, or panics with the property that failed.
pub type Check = fn(&[u8]);

/// Every target: its name (the cargo-fuzz binary and corpus directory)
/// and its check.
pub const TARGETS: &[(&str, Check)] = &[
    ("policy", policy::check),
    ("splice", splice::check),
    ("envelope", envelope::check),
    ("scrub", scrub::check),
    ("chain", chain::check),
    ("body", body::check),
    ("path", path::check),
    ("stream", stream::check),
];

/// Reads a structured input from the front of the fuzzer's bytes. Reads
/// past the end give zeros and empty slices, so every byte string is a
/// valid input (the fuzzer never wastes runs on a refused framing).
pub struct Input<'a> {
    origin: &'a [u8],
    data: &'a [u8],
}

impl<'a> Input<'a> {
    pub fn new(data: &'a [u8]) -> Self {
        Input { origin: data, data }
    }

    pub fn byte(&mut self) -> u8 {
        match self.data.split_first() {
            Some((b, rest)) => {
                self.data = rest;
                *b
            }
            None => 0,
        }
    }

    pub fn u16(&mut self) -> u16 {
        u16::from_le_bytes([self.byte(), self.byte()])
    }

    /// Up to `n` bytes.
    pub fn take(&mut self, n: usize) -> &'a [u8] {
        let (head, rest) = self.data.split_at(n.min(self.data.len()));
        self.data = rest;
        head
    }

    /// A length byte (`% max`), then that many bytes.
    pub fn short(&mut self, max: u8) -> &'a [u8] {
        let n = self.byte() % max.max(1);
        self.take(n as usize)
    }

    pub fn rest(self) -> &'a [u8] {
        self.data
    }

    /// Bytes not read yet.
    pub fn rest_len(&self) -> usize {
        self.data.len()
    }

    /// What was read since [`Input::rest_len`] returned `before`.
    pub fn consumed_since(&self, before: usize) -> &'a [u8] {
        // `data` is always a suffix of `origin`.
        let end = self.origin.len() - self.data.len();
        let start = self.origin.len().saturating_sub(before).min(end);
        &self.origin[start..end]
    }
}

/// Text from bytes: invalid UTF-8 becomes U+FFFD, so text targets still
/// see every byte pattern the fuzzer makes.
pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}
