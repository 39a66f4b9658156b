//! The envelope: one encrypted JSON value as a self-describing string.
//!
//! ```text
//! dpg1.<key id>.<base64url(nonce[12] || ciphertext || tag[16])>[.<base64url(blind index[8])>]
//! ```
//!
//! Authenticated data (never sent, rebuilt by the reader):
//!
//! ```text
//! AAD = u8 len || key id || D || B || nonce[11]
//! D   = SHA-256("dpg1/aad" || u8 direction || u32be len || path || u32be len || context)
//! B   = empty, or u32be n || n x (u32be len || name || u32be len || canonical value)
//! ```
//!
//! The RFC 8452 nonce is `nonce[0..11] || 00`; the last nonce byte (the
//! field counter) is authenticated instead. A sealer draws 11 random bytes
//! per body and counts its fields, so one key derivation (half of a seal in
//! V8) serves up to 256 fields, while no two fields share the
//! (authenticated data, plaintext) pair: GCM-SIV under a repeated nonce
//! reveals only such repeated pairs (RFC 8452 §9), so equal values still
//! give unrelated envelopes. A reader keeps the derived keys of the last
//! nonce it saw, so a body's envelopes open with one derivation too.
//!
//! `D` depends only on the position (direction, canonical path, rule
//! context), so the filter computes it once per selector at configure time
//! ([`FieldDigest`]) and POLYVAL sees a fixed 32 bytes instead of the path;
//! `B` holds the record's context fields. The version, key id, direction,
//! path, context and bound fields are therefore all authenticated: an
//! envelope copied to another field, message direction, context or record
//! fails. The plaintext is the value's JSON text, so decryption restores
//! the type. Full specification and test vectors: docs/envelope.md,
//! core/testdata/envelope-vectors.json.

use std::fmt;

use base64ct::{Base64UrlUnpadded, Encoding};
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

use super::gcm_siv::MessageKeys;
use super::keyring::{Key, Keyring};
use super::prf::prf;
use crate::json::{self, Bound};

/// Version tag, first field of every envelope.
pub const PREFIX: &str = "dpg1.";
pub const NONCE_LEN: usize = 12;
pub const TAG_LEN: usize = 16;
/// Blind index length: 64 bits keeps collisions rare for equality lookups
/// while every index value is shared by many possible plaintexts.
pub const BLIND_INDEX_LEN: usize = 8;

/// How the nonce is chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// 96 random bits from the system source (getrandom): equal values give
    /// unrelated envelopes.
    Random,
    /// Synthetic nonce = HMAC-SHA256(nonce key, aad || canonical value),
    /// truncated to 96 bits: equal (value, path, context, key) give equal
    /// envelopes, for equality joins. Leaks equality, nothing else
    /// (GCM-SIV is nonce-misuse resistant).
    Deterministic,
}

/// Options for sealing one value.
#[derive(Debug, Clone, Copy)]
pub struct SealOptions {
    pub mode: Mode,
    pub blind_index: bool,
}

/// Which message of an exchange carries the envelope. Authenticated, so a
/// request's envelope does not open in a response and vice versa.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    Request = 1,
    Response = 2,
}

/// `D`: the digest of the position-dependent authenticated data.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct FieldDigest(pub [u8; 32]);

impl fmt::Debug for FieldDigest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in &self.0[..4] {
            write!(f, "{b:02x}")?;
        }
        f.write_str("..")
    }
}

impl FieldDigest {
    /// `SHA-256("dpg1/aad" || u8 direction || u32be len || path || u32be len || context)`.
    pub fn new(flow: Flow, path: &str, context: &[u8]) -> FieldDigest {
        let mut h = Sha256::new();
        h.update(b"dpg1/aad");
        h.update([flow as u8]);
        h.update((path.len() as u32).to_be_bytes());
        h.update(path.as_bytes());
        h.update((context.len() as u32).to_be_bytes());
        h.update(context);
        FieldDigest(h.finalize().into())
    }
}

/// Where a value is sealed: everything the authenticated data binds.
#[derive(Clone, Copy)]
pub struct Field<'a> {
    /// Canonical path (blind index input).
    pub path: &'a str,
    /// Rule context (blind index input).
    pub context: &'a [u8],
    /// `D` for (direction, path, context).
    pub digest: &'a FieldDigest,
    /// The record's context fields (`B`).
    pub bound: Bound<'a>,
}

/// Why an envelope did not open, or a value could not be sealed. None of
/// these carry the value or key material.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EnvelopeError {
    /// Not an envelope at all (a selected field held a plain value).
    NotEnvelope,
    /// `dpgN.` with an N this build does not read.
    UnsupportedVersion,
    /// Structurally broken or too short (truncated).
    Malformed,
    /// The key id is not in the keyring (removed, or never rolled out).
    UnknownKey,
    /// Authentication failed: changed bytes, another path or context.
    Tampered,
    /// Authenticated, but the plaintext is not one JSON value.
    BadPlaintext,
    /// The value to seal is not JSON, or the random source failed.
    Seal,
}

impl EnvelopeError {
    /// Stable short name for events and error bodies.
    pub fn code(self) -> &'static str {
        match self {
            EnvelopeError::NotEnvelope => "not_an_envelope",
            EnvelopeError::UnsupportedVersion => "unsupported_envelope_version",
            EnvelopeError::Malformed => "malformed_envelope",
            EnvelopeError::UnknownKey => "unknown_key",
            EnvelopeError::Tampered => "envelope_authentication_failed",
            EnvelopeError::BadPlaintext => "bad_plaintext",
            EnvelopeError::Seal => "seal_failed",
        }
    }
}

impl fmt::Display for EnvelopeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

impl std::error::Error for EnvelopeError {}

/// Nonce bytes drawn at random per body; the rest of the nonce counts the
/// body's fields.
pub const NONCE_PREFIX_LEN: usize = 11;

/// The RFC 8452 nonce of an envelope's nonce: its random prefix and a zero
/// byte.
fn aead_nonce(nonce: &[u8; NONCE_LEN]) -> [u8; NONCE_LEN] {
    let mut n = [0u8; NONCE_LEN];
    n[..NONCE_PREFIX_LEN].copy_from_slice(&nonce[..NONCE_PREFIX_LEN]);
    n
}

/// Builds `u8 len || key id || D || B` into `out`: the authenticated data
/// without the field counter (the deterministic nonce's input).
fn aad(out: &mut Vec<u8>, key_id: &str, field: &Field<'_>) {
    out.clear();
    // Key ids are at most 32 bytes (KeyId::MAX_LEN), so the length fits.
    out.push(key_id.len() as u8);
    out.extend_from_slice(key_id.as_bytes());
    out.extend_from_slice(&field.digest.0);
    if !field.bound.is_empty() {
        // Length prefixes keep the encoding injective.
        out.extend_from_slice(&(field.bound.len() as u32).to_be_bytes());
        for (name, value) in field.bound.fields() {
            out.extend_from_slice(&(name.len() as u32).to_be_bytes());
            out.extend_from_slice(name.as_bytes());
            out.extend_from_slice(&(value.len() as u32).to_be_bytes());
            out.extend_from_slice(value);
        }
    }
}

/// Ends the authenticated data with the nonce's field counter: the byte
/// the RFC 8452 nonce leaves out ([`aead_nonce`]) is authenticated here.
fn authenticate_counter(aad: &mut Vec<u8>, nonce: &[u8; NONCE_LEN]) {
    aad.extend_from_slice(&nonce[NONCE_PREFIX_LEN..]);
}

/// The authenticated data of a field sealed under `nonce`, as bytes (test
/// vectors, other implementations).
pub fn aad_bytes(key_id: &str, field: &Field<'_>, nonce: &[u8; NONCE_LEN]) -> Vec<u8> {
    let mut out = Vec::new();
    aad(&mut out, key_id, field);
    authenticate_counter(&mut out, nonce);
    out
}

/// Reusable state for the fields of one body: buffers (allocated once per
/// body), the nonce prefix and field counter, and the per-nonce keys last
/// derived. Use one per body; a new body's `Scratch` draws a new prefix.
#[derive(Default)]
pub struct Scratch {
    aad: Vec<u8>,
    buf: Vec<u8>,
    canon: Vec<u8>,
    /// The random nonce prefix and the next field counter (random mode).
    prefix: Option<([u8; NONCE_PREFIX_LEN], u32)>,
    /// Per-nonce keys kept from the last seal or open, with the key they
    /// were derived under ([`Key::instance`]).
    kept: Option<(u64, MessageKeys)>,
}

impl Scratch {
    /// The next random-mode nonce: the body's prefix and the field counter.
    /// One call to the random source (a host call in the proxy) per 256
    /// fields of a body: a longer body draws another prefix (and derives
    /// keys once more) rather than reuse a counter.
    fn random_nonce(&mut self) -> Result<[u8; NONCE_LEN], EnvelopeError> {
        let (prefix, counter) = match self.prefix {
            Some((prefix, counter)) if counter <= u32::from(u8::MAX) => (prefix, counter),
            _ => {
                let mut prefix = [0u8; NONCE_PREFIX_LEN];
                getrandom::fill(&mut prefix).map_err(|_| EnvelopeError::Seal)?;
                (prefix, 0)
            }
        };
        self.prefix = Some((prefix, counter + 1));
        let mut nonce = [0u8; NONCE_LEN];
        nonce[..NONCE_PREFIX_LEN].copy_from_slice(&prefix);
        // counter <= u8::MAX here, so its low byte is all of it.
        nonce[NONCE_PREFIX_LEN..].copy_from_slice(&counter.to_be_bytes()[3..]);
        Ok(nonce)
    }
}

/// The per-nonce keys for `nonce` under `key`: the kept ones when they
/// match, else derived and kept.
fn message_keys<'s>(
    kept: &'s mut Option<(u64, MessageKeys)>,
    key: &Key,
    nonce: &[u8; NONCE_LEN],
) -> &'s MessageKeys {
    let aead_nonce = aead_nonce(nonce);
    if !matches!(kept, Some((instance, keys))
        if *instance == key.instance && keys.nonce() == &aead_nonce)
    {
        *kept = None;
    }
    &kept
        .get_or_insert_with(|| (key.instance, key.aead.message_keys(&aead_nonce)))
        .1
}

impl Drop for Scratch {
    fn drop(&mut self) {
        // `canon` and `buf` held plaintext at some point.
        use zeroize::Zeroize;
        self.canon.zeroize();
        self.buf.zeroize();
    }
}

fn blind_index(key: &Key, path: &str, context: &[u8], canon: &[u8]) -> Hmac<Sha256> {
    let mut mac = prf(&key.index_key);
    mac.update(&(path.len() as u32).to_be_bytes());
    mac.update(path.as_bytes());
    mac.update(&(context.len() as u32).to_be_bytes());
    mac.update(context);
    mac.update(canon);
    mac
}

/// Seals one JSON value (`raw`, its exact text) found at `field`, appending
/// the envelope as a JSON string (with quotes) to `out`.
pub fn seal_into(
    key: &Key,
    field: &Field<'_>,
    raw: &[u8],
    opts: SealOptions,
    scratch: &mut Scratch,
    out: &mut Vec<u8>,
) -> Result<(), EnvelopeError> {
    seal_inner(key, field, raw, opts, None, scratch, out)
}

/// [`seal_into`] with a nonce given by the caller, for test vectors only:
/// a random-mode nonce must never be chosen twice for one key.
pub fn seal_with_nonce(
    key: &Key,
    field: &Field<'_>,
    raw: &[u8],
    opts: SealOptions,
    nonce: [u8; NONCE_LEN],
    out: &mut Vec<u8>,
) -> Result<(), EnvelopeError> {
    seal_inner(
        key,
        field,
        raw,
        opts,
        Some(nonce),
        &mut Scratch::default(),
        out,
    )
}

fn seal_inner(
    key: &Key,
    field: &Field<'_>,
    raw: &[u8],
    opts: SealOptions,
    given_nonce: Option<[u8; NONCE_LEN]>,
    scratch: &mut Scratch,
    out: &mut Vec<u8>,
) -> Result<(), EnvelopeError> {
    let id = key.id().as_str();
    aad(&mut scratch.aad, id, field);
    let needs_canon = opts.mode == Mode::Deterministic || opts.blind_index;
    if needs_canon {
        scratch.canon.clear();
        json::canonical(raw, &mut scratch.canon).map_err(|_| EnvelopeError::Seal)?;
    }
    // Deterministic mode encrypts the canonical text so equal values with
    // different spelling still give equal envelopes; random mode keeps the
    // exact spelling.
    let plaintext: &[u8] = if opts.mode == Mode::Deterministic {
        &scratch.canon
    } else {
        raw
    };

    let nonce = match (given_nonce, opts.mode) {
        (Some(n), _) => n,
        (None, Mode::Random) => scratch.random_nonce()?,
        (None, Mode::Deterministic) => {
            let mut mac = prf(&key.nonce_key);
            mac.update(&(scratch.aad.len() as u32).to_be_bytes());
            mac.update(&scratch.aad);
            mac.update(plaintext);
            let prf = mac.finalize().into_bytes();
            let mut nonce = [0u8; NONCE_LEN];
            nonce.copy_from_slice(&prf[..NONCE_LEN]);
            nonce
        }
    };
    authenticate_counter(&mut scratch.aad, &nonce);
    let plaintext: &[u8] = if opts.mode == Mode::Deterministic {
        &scratch.canon
    } else {
        raw
    };
    let buf = &mut scratch.buf;
    buf.clear();
    buf.extend_from_slice(&nonce);
    buf.extend_from_slice(plaintext);
    let tag = message_keys(&mut scratch.kept, key, &nonce)
        .seal_in_place(&scratch.aad, &mut buf[NONCE_LEN..])
        .map_err(|_| EnvelopeError::Seal)?;
    buf.extend_from_slice(&tag);

    // One reservation for the whole string: quotes, prefix, id, dots,
    // base64 of the payload and of the index.
    out.reserve(
        2 + PREFIX.len()
            + id.len()
            + 2
            + Base64UrlUnpadded::encoded_len(buf)
            + if opts.blind_index { 12 } else { 0 },
    );
    out.push(b'"');
    out.extend_from_slice(PREFIX.as_bytes());
    out.extend_from_slice(id.as_bytes());
    out.push(b'.');
    encode_b64(buf, out);
    if opts.blind_index {
        let mac = blind_index(key, field.path, field.context, &scratch.canon).finalize();
        out.push(b'.');
        encode_b64(&mac.into_bytes()[..BLIND_INDEX_LEN], out);
    }
    out.push(b'"');
    Ok(())
}

fn encode_b64(src: &[u8], out: &mut Vec<u8>) {
    let start = out.len();
    let len = Base64UrlUnpadded::encoded_len(src);
    out.resize(start + len, 0);
    // The destination is exactly the encoded length, so this cannot fail.
    let _ = Base64UrlUnpadded::encode(src, &mut out[start..]);
}

/// Opens the envelope `text` (the JSON string's content, no quotes) found at
/// `field`, appending the original JSON value's text to `out`.
pub fn open_into(
    keyring: &Keyring,
    field: &Field<'_>,
    text: &[u8],
    scratch: &mut Scratch,
    out: &mut Vec<u8>,
) -> Result<(), EnvelopeError> {
    let text = std::str::from_utf8(text).map_err(|_| EnvelopeError::NotEnvelope)?;
    let Some(rest) = text.strip_prefix(PREFIX) else {
        let versioned = text.strip_prefix("dpg").is_some_and(|r| {
            r.split_once('.')
                .is_some_and(|(v, _)| !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()))
        });
        return Err(if versioned {
            EnvelopeError::UnsupportedVersion
        } else {
            EnvelopeError::NotEnvelope
        });
    };
    let mut parts = rest.split('.');
    let (Some(id), Some(payload)) = (parts.next(), parts.next()) else {
        return Err(EnvelopeError::Malformed);
    };
    let index = parts.next();
    if parts.next().is_some() {
        return Err(EnvelopeError::Malformed);
    }
    // The key is chosen by the authenticated key id, never by trial:
    // GCM-SIV is not key-committing.
    let key = keyring.get(id).ok_or(EnvelopeError::UnknownKey)?;

    let buf = &mut scratch.buf;
    buf.clear();
    // Decoded base64 is never longer than its text.
    buf.resize(payload.len(), 0);
    let n = Base64UrlUnpadded::decode(payload, buf)
        .map_err(|_| EnvelopeError::Malformed)?
        .len();
    buf.truncate(n);
    if n < NONCE_LEN + TAG_LEN {
        return Err(EnvelopeError::Malformed);
    }
    let (nonce, rest) = buf.split_at_mut(NONCE_LEN);
    let (body, tag) = rest.split_at_mut(rest.len() - TAG_LEN);
    let (Ok(nonce), Ok(tag)) = (
        <&[u8; NONCE_LEN]>::try_from(&*nonce),
        <&[u8; TAG_LEN]>::try_from(&*tag),
    ) else {
        return Err(EnvelopeError::Malformed);
    };
    aad(&mut scratch.aad, id, field);
    authenticate_counter(&mut scratch.aad, nonce);
    message_keys(&mut scratch.kept, key, nonce)
        .open_in_place(&scratch.aad, body, tag)
        .map_err(|_| EnvelopeError::Tampered)?;
    let plaintext: &[u8] = body;
    json::validate(plaintext).map_err(|_| EnvelopeError::BadPlaintext)?;

    if let Some(index) = index {
        // The blind index sits outside the AEAD; recompute and compare so a
        // swapped index is caught like any other change.
        let mut given = [0u8; BLIND_INDEX_LEN];
        match Base64UrlUnpadded::decode(index, &mut given) {
            Ok(g) if g.len() == BLIND_INDEX_LEN => {}
            _ => return Err(EnvelopeError::Malformed),
        }
        scratch.canon.clear();
        json::canonical(plaintext, &mut scratch.canon).map_err(|_| EnvelopeError::BadPlaintext)?;
        blind_index(key, field.path, field.context, &scratch.canon)
            .verify_truncated_left(&given)
            .map_err(|_| EnvelopeError::Tampered)?;
    }
    out.extend_from_slice(plaintext);
    Ok(())
}

/// The blind index of a value as it appears in envelopes (base64url), for
/// building lookup keys outside the proxy (CLI, batch jobs).
pub fn blind_index_of(
    key: &Key,
    path: &str,
    raw: &[u8],
    context: &[u8],
) -> Result<String, EnvelopeError> {
    let mut canon = Vec::new();
    json::canonical(raw, &mut canon).map_err(|_| EnvelopeError::Seal)?;
    let mac = blind_index(key, path, context, &canon).finalize();
    Ok(Base64UrlUnpadded::encode_string(
        &mac.into_bytes()[..BLIND_INDEX_LEN],
    ))
}

#[cfg(test)]
mod tests;
