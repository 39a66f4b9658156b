//! Envelope parsing and opening.
//!
//! Input: one op byte, then
//! - op even (open): flow, path and context (length-prefixed), the rest is an
//!   envelope text as it would sit inside a JSON string. Property: no
//!   panic; whatever opens is one JSON value, and its text is the one
//!   canonical spelling of the envelope (no second spelling of the same
//!   ciphertext opens: base64 padding bits, case, extra parts);
//! - op odd (seal, open, tamper): flags, a mutation (position, xor byte),
//!   path, context, then a JSON value. Properties: the envelope opens to
//!   the value (its exact text in random mode, its canonical text in
//!   deterministic mode); it fails under another path, context or flow
//!   (request/response); the
//!   mutated envelope does not open.

use dpp_core::crypto::envelope::{self, Field, FieldDigest, Flow, Scratch, SealOptions};
use dpp_core::crypto::{EnvelopeError, Mode};
use dpp_core::json::{self, Bound};

use crate::fixtures::keyring;
use crate::Input;

pub fn check(data: &[u8]) {
    let mut input = Input::new(data);
    if input.byte() & 1 == 0 {
        open_arbitrary(input);
    } else {
        seal_open_tamper(input);
    }
}

/// Where a value sits: what the authenticated data binds.
fn open_at(flow: Flow, path: &str, context: &[u8], text: &[u8]) -> Result<Vec<u8>, EnvelopeError> {
    let digest = FieldDigest::new(flow, path, context);
    let field = Field {
        path,
        context,
        digest: &digest,
        bound: Bound::NONE,
    };
    let mut out = Vec::new();
    envelope::open_into(keyring(), &field, text, &mut Scratch::default(), &mut out)?;
    Ok(out)
}

fn open_arbitrary(mut input: Input<'_>) {
    let flow = if input.byte() & 1 == 0 {
        Flow::Request
    } else {
        Flow::Response
    };
    let path = crate::text(input.short(64));
    let context = input.short(32).to_vec();
    let text = input.rest();
    let opened = open_at(flow, &path, &context, text);
    if let Ok(out) = opened {
        json::validate(&out).expect("an opened envelope holds one JSON value");
        assert_canonical(text);
    }
}

/// The text of an envelope that opened is exactly what the sealer writes
/// for its bytes.
fn assert_canonical(text: &[u8]) {
    use base64ct::{Base64UrlUnpadded, Encoding};
    let text = std::str::from_utf8(text).expect("opened envelope is UTF-8");
    let rest = text
        .strip_prefix(envelope::PREFIX)
        .expect("opened envelope has the prefix");
    let parts: Vec<&str> = rest.split('.').collect();
    assert!(
        parts.len() == 2 || parts.len() == 3,
        "opened envelope has {} parts",
        parts.len()
    );
    for part in &parts[1..] {
        let bytes = Base64UrlUnpadded::decode_vec(part).expect("opened envelope is base64url");
        assert_eq!(
            &Base64UrlUnpadded::encode_string(&bytes),
            part,
            "a non-canonical base64 spelling opened"
        );
    }
}

fn seal_open_tamper(mut input: Input<'_>) {
    let flags = input.byte();
    let mode = if flags & 1 != 0 {
        Mode::Deterministic
    } else {
        Mode::Random
    };
    let blind_index = flags & 2 != 0;
    let (flow, other_flow) = if flags & 4 == 0 {
        (Flow::Request, Flow::Response)
    } else {
        (Flow::Response, Flow::Request)
    };
    let position = input.u16() as usize;
    let xor = input.byte();
    let path = crate::text(input.short(64));
    let context = input.short(32).to_vec();
    let raw = input.rest();
    if json::validate(raw).is_err() {
        return;
    }
    let mut canonical = Vec::new();
    json::canonical(raw, &mut canonical).expect("a value that validates has a canonical form");

    let opts = SealOptions { mode, blind_index };
    let digest = FieldDigest::new(flow, &path, &context);
    let field = Field {
        path: &path,
        context: &context,
        digest: &digest,
        bound: Bound::NONE,
    };
    let mut sealed = Vec::new();
    envelope::seal_into(
        keyring().primary(),
        &field,
        raw,
        opts,
        &mut Scratch::default(),
        &mut sealed,
    )
    .expect("sealing a JSON value");
    let text = sealed
        .strip_prefix(b"\"")
        .and_then(|t| t.strip_suffix(b"\""))
        .expect("an envelope is a JSON string");
    json::validate(&sealed).expect("the envelope is a JSON string");

    let open = |path: &str, context: &[u8], text: &[u8]| open_at(flow, path, context, text);
    let expected: &[u8] = if mode == Mode::Deterministic {
        &canonical
    } else {
        raw
    };
    assert_eq!(
        open(&path, &context, text).expect("our own envelope opens"),
        expected
    );
    assert_canonical(text);

    let other_path = format!("{path}.x");
    assert_eq!(
        open(&other_path, &context, text),
        Err(EnvelopeError::Tampered),
        "opened under another path"
    );
    let mut other_context = context.clone();
    other_context.push(b'x');
    assert_eq!(
        open(&path, &other_context, text),
        Err(EnvelopeError::Tampered),
        "opened under another context"
    );

    assert_eq!(
        open_at(other_flow, &path, &context, text),
        Err(EnvelopeError::Tampered),
        "opened in the other message of the exchange"
    );

    let xor = if xor == 0 { 1 } else { xor };
    let mut mutated = text.to_vec();
    let at = position % mutated.len();
    mutated[at] ^= xor;
    if let Ok(out) = open(&path, &context, &mutated) {
        panic!(
            "a changed envelope opened (byte {at} ^ {xor:#04x}): {:?} -> {:?}",
            crate::text(&mutated),
            crate::text(&out)
        );
    }
}
