use super::*;
use crate::crypto::Keyring;
use crate::json::Bound;
use proptest::prelude::*;
use serde_json::Value;

const K1: &str = "k1=AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8";
const K2: &str = "k2=ICEiIyQlJicoKSorLC0uLzAxMjM0NTY3ODk6Ozw9Pj8";
// The same key material as K1 under another id.
const K1_AS_K3: &str = "k3=AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8";

fn ring() -> Keyring {
    Keyring::parse(&format!("{K1} {K2} {K1_AS_K3} primary=k1")).unwrap()
}

/// Sealing options plus the context, as the tests vary them.
#[derive(Clone, Copy)]
struct O<'a> {
    mode: Mode,
    context: &'a [u8],
    blind_index: bool,
}

fn opts(mode: Mode, context: &[u8], blind_index: bool) -> O<'_> {
    O {
        mode,
        context,
        blind_index,
    }
}

/// A record's bound fields for the tests: `(name, canonical value)`.
struct Rec {
    names: Vec<Box<str>>,
    ranges: Vec<(usize, usize)>,
    arena: Vec<u8>,
}

impl Rec {
    fn new(fields: &[(&str, &str)]) -> Rec {
        let mut r = Rec {
            names: Vec::new(),
            ranges: Vec::new(),
            arena: Vec::new(),
        };
        for (n, v) in fields {
            r.names.push((*n).into());
            let a = r.arena.len();
            r.arena.extend_from_slice(v.as_bytes());
            r.ranges.push((a, r.arena.len()));
        }
        r
    }

    fn bound(&self) -> Bound<'_> {
        Bound::from_parts(&self.names, &self.ranges, &self.arena)
    }
}

/// Seals (request direction, no record) and returns the envelope text
/// without the JSON quotes.
fn seal(ring: &Keyring, key: &str, path: &str, raw: &[u8], o: O<'_>) -> String {
    seal_at(ring, key, Flow::Request, path, &Rec::new(&[]), raw, o)
}

fn seal_at(
    ring: &Keyring,
    key: &str,
    flow: Flow,
    path: &str,
    rec: &Rec,
    raw: &[u8],
    o: O<'_>,
) -> String {
    let digest = FieldDigest::new(flow, path, o.context);
    let field = Field {
        path,
        context: o.context,
        digest: &digest,
        bound: rec.bound(),
    };
    let mut out = Vec::new();
    seal_into(
        ring.get(key).unwrap(),
        &field,
        raw,
        SealOptions {
            mode: o.mode,
            blind_index: o.blind_index,
        },
        &mut Scratch::default(),
        &mut out,
    )
    .unwrap();
    let s = String::from_utf8(out).unwrap();
    s[1..s.len() - 1].to_string()
}

fn open(ring: &Keyring, path: &str, env: &str, context: &[u8]) -> Result<Vec<u8>, EnvelopeError> {
    open_at(ring, Flow::Request, path, &Rec::new(&[]), env, context)
}

fn open_at(
    ring: &Keyring,
    flow: Flow,
    path: &str,
    rec: &Rec,
    env: &str,
    context: &[u8],
) -> Result<Vec<u8>, EnvelopeError> {
    let digest = FieldDigest::new(flow, path, context);
    let field = Field {
        path,
        context,
        digest: &digest,
        bound: rec.bound(),
    };
    let mut out = Vec::new();
    open_into(
        ring,
        &field,
        env.as_bytes(),
        &mut Scratch::default(),
        &mut out,
    )?;
    Ok(out)
}

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(Value::from),
        ".*".prop_map(Value::String),
    ];
    leaf.prop_recursive(3, 24, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map(".*", inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

fn json_path() -> impl Strategy<Value = String> {
    prop::collection::vec(
        prop_oneof![
            "[A-Za-z_][A-Za-z0-9_]{0,8}".prop_map(|k| format!(".{k}")),
            Just("[*]".to_string()),
            ".*".prop_map(|k| format!("[{}]", serde_json::to_string(&k).unwrap())),
        ],
        1..5,
    )
    .prop_map(|segs| format!("${}", segs.concat()))
}

fn mode() -> impl Strategy<Value = Mode> {
    prop_oneof![Just(Mode::Random), Just(Mode::Deterministic)]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    /// Any JSON value at any path comes back with its type; random mode
    /// even keeps the exact spelling.
    #[test]
    fn round_trip(v in json_value(), path in json_path(), ctx in ".{0,12}", m in mode(),
                  bi in any::<bool>(), pretty in any::<bool>()) {
        let ring = ring();
        let raw = if pretty { serde_json::to_vec_pretty(&v) } else { serde_json::to_vec(&v) }.unwrap();
        let env = seal(&ring, "k1", &path, &raw, opts(m, ctx.as_bytes(), bi));
        prop_assert!(env.starts_with("dpg1.k1."));
        prop_assert!(env.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.'));
        let back = open(&ring, &path, &env, ctx.as_bytes()).unwrap();
        // Compared through one parser, so float parsing precision is moot.
        let back_v: Value = serde_json::from_slice(&back).unwrap();
        let raw_v: Value = serde_json::from_slice(&raw).unwrap();
        prop_assert_eq!(back_v, raw_v);
        if m == Mode::Random {
            prop_assert_eq!(back, raw);
        }
    }

    /// Changing any one byte of an envelope makes it fail.
    #[test]
    fn any_changed_byte_fails(v in json_value(), path in json_path(), m in mode(), bi in any::<bool>(),
                              pos in any::<prop::sample::Index>(),
                              replacement in "[A-Za-z0-9_.=-]") {
        let ring = ring();
        let raw = serde_json::to_vec(&v).unwrap();
        let env = seal(&ring, "k1", &path, &raw, opts(m, b"ctx", bi));
        let i = pos.index(env.len());
        let r = replacement.as_bytes()[0];
        prop_assume!(env.as_bytes()[i] != r);
        let mut bytes = env.clone().into_bytes();
        bytes[i] = r;
        let changed = String::from_utf8(bytes).unwrap();
        prop_assert!(open(&ring, &path, &changed, b"ctx").is_err(), "{} -> {}", env, changed);
        // Truncation at any point fails too, except cutting off exactly
        // the blind index (which is optional and not secret).
        let without_index = if bi { env.rsplit_once('.').map(|(e, _)| e) } else { None };
        if Some(&env[..i]) != without_index {
            prop_assert!(open(&ring, &path, &env[..i], b"ctx").is_err());
        }
    }

    /// Another key id (even with the same key bytes), path or context fails.
    #[test]
    fn other_key_id_path_or_context_fails(v in json_value(), path in json_path(), other in json_path(),
                                          ctx in ".{0,8}", other_ctx in ".{0,8}", m in mode()) {
        let ring = ring();
        let raw = serde_json::to_vec(&v).unwrap();
        let env = seal(&ring, "k1", &path, &raw, opts(m, ctx.as_bytes(), false));
        for id in ["k2", "k3"] {
            let moved = env.replacen("dpg1.k1.", &format!("dpg1.{id}."), 1);
            prop_assert_eq!(open(&ring, &path, &moved, ctx.as_bytes()), Err(EnvelopeError::Tampered));
        }
        if other != path {
            prop_assert_eq!(open(&ring, &other, &env, ctx.as_bytes()), Err(EnvelopeError::Tampered));
        }
        if other_ctx != ctx {
            prop_assert_eq!(open(&ring, &path, &env, other_ctx.as_bytes()), Err(EnvelopeError::Tampered));
        }
    }
}

#[test]
fn deterministic_mode_is_equal_for_equal_inputs_only() {
    let ring = ring();
    let d = |path: &str, raw: &[u8], ctx: &[u8]| {
        seal(
            &ring,
            "k1",
            path,
            raw,
            opts(Mode::Deterministic, ctx, false),
        )
    };
    assert_eq!(d("$.a", br#""x@y.z""#, b""), d("$.a", br#""x@y.z""#, b""));
    // Spelling does not matter, the value does.
    assert_eq!(
        d("$.a", br#"{"k": "\u0041"}"#, b""),
        d("$.a", br#"{"k":"A"}"#, b"")
    );
    assert_ne!(d("$.a", br#""x@y.z""#, b""), d("$.b", br#""x@y.z""#, b""));
    assert_ne!(d("$.a", br#""x@y.z""#, b""), d("$.a", br#""x@y.z""#, b"t2"));
    assert_ne!(d("$.a", br#""x@y.z""#, b""), d("$.a", br#""x@y.zz""#, b""));
    let r = |raw: &[u8]| seal(&ring, "k1", "$.a", raw, opts(Mode::Random, b"", false));
    assert_ne!(r(b"1"), r(b"1"));
}

#[test]
fn blind_index_is_stable_keyed_and_checked() {
    let ring = ring();
    let s = |raw: &[u8]| seal(&ring, "k1", "$.e", raw, opts(Mode::Random, b"", true));
    let (a, b) = (s(br#""x@y.z""#), s(br#""x@y.z""#));
    assert_ne!(a, b);
    let index = |e: &str| e.rsplit('.').next().unwrap().to_string();
    assert_eq!(index(&a), index(&b));
    assert_eq!(
        index(&a),
        blind_index_of(ring.get("k1").unwrap(), "$.e", br#""x@y.z""#, b"").unwrap()
    );
    assert_ne!(index(&a), index(&s(br#""other""#)));
    let k2 = seal(
        &ring,
        "k2",
        "$.e",
        br#""x@y.z""#,
        opts(Mode::Random, b"", true),
    );
    assert_ne!(index(&a), index(&k2));
    // Moving an index to another envelope is caught.
    let swapped = format!(
        "{}.{}",
        a.rsplit_once('.').unwrap().0,
        index(&s(br#""other""#))
    );
    assert_eq!(
        open(&ring, "$.e", &swapped, b""),
        Err(EnvelopeError::Tampered)
    );
    // Dropping it does not hide anything: the envelope still opens.
    assert!(open(&ring, "$.e", a.rsplit_once('.').unwrap().0, b"").is_ok());
}

#[test]
fn refusals_are_classified() {
    let ring = ring();
    let env = seal(&ring, "k2", "$.a", b"1", opts(Mode::Random, b"", false));
    let only_k1 = Keyring::parse(K1).unwrap();
    assert_eq!(
        open(&only_k1, "$.a", &env, b""),
        Err(EnvelopeError::UnknownKey)
    );
    assert_eq!(
        open(&ring, "$.a", "hello", b""),
        Err(EnvelopeError::NotEnvelope)
    );
    assert_eq!(
        open(&ring, "$.a", "dpg2.k1.AAAA", b""),
        Err(EnvelopeError::UnsupportedVersion)
    );
    assert_eq!(
        open(&ring, "$.a", "dpg1.k1.AAAA", b""),
        Err(EnvelopeError::Malformed)
    );
    assert_eq!(
        open(&ring, "$.a", "dpg1.k1", b""),
        Err(EnvelopeError::Malformed)
    );
    assert_eq!(
        open(&ring, "$.a", "dpg1.k1.!!!!", b""),
        Err(EnvelopeError::Malformed)
    );
    // Sealing something that is not JSON (a bug upstream of us) fails
    // in deterministic mode, which must canonicalize it.
    let mut out = Vec::new();
    let digest = digest_a();
    let field = field_a(&digest);
    assert_eq!(
        seal_into(
            ring.primary(),
            &field,
            b"{",
            SealOptions {
                mode: Mode::Deterministic,
                blind_index: false
            },
            &mut Scratch::default(),
            &mut out
        ),
        Err(EnvelopeError::Seal)
    );
}

/// The direction is authenticated: a request's envelope does not open as
/// a response's, whatever else is equal.
#[test]
fn direction_is_bound() {
    let ring = ring();
    for mode in [Mode::Random, Mode::Deterministic] {
        let none = Rec::new(&[]);
        let env = seal_at(
            &ring,
            "k1",
            Flow::Request,
            "$.a",
            &none,
            b"\"x\"",
            opts(mode, b"c", false),
        );
        assert!(open_at(&ring, Flow::Request, "$.a", &none, &env, b"c").is_ok());
        assert_eq!(
            open_at(&ring, Flow::Response, "$.a", &none, &env, b"c"),
            Err(EnvelopeError::Tampered)
        );
    }
}

/// Bound fields are authenticated by name and value, and their absence is
/// not the same as an empty record.
#[test]
fn record_fields_are_bound() {
    let ring = ring();
    let order1 = Rec::new(&[("AmazonOrderId", "\"902-1\"")]);
    let env = seal_at(
        &ring,
        "k1",
        Flow::Response,
        "$.p.e",
        &order1,
        b"1",
        opts(Mode::Random, b"", false),
    );
    let open = |rec: &Rec| open_at(&ring, Flow::Response, "$.p.e", rec, &env, b"");
    assert!(open(&order1).is_ok());
    for other in [
        Rec::new(&[("AmazonOrderId", "\"902-2\"")]),
        Rec::new(&[("OrderId", "\"902-1\"")]),
        Rec::new(&[]),
        Rec::new(&[("AmazonOrderId", "\"902-1\""), ("X", "1")]),
        Rec::new(&[("AmazonOrderId", "\"902-1\"1")]),
    ] {
        assert_eq!(open(&other), Err(EnvelopeError::Tampered));
    }
    // Injective: moving bytes between a name and its value changes the AAD.
    let digest = FieldDigest::new(Flow::Response, "$.p.e", b"");
    let aad = |rec: &Rec| {
        aad_bytes(
            "k1",
            &Field {
                path: "$.p.e",
                context: b"",
                digest: &digest,
                bound: rec.bound(),
            },
            &[0; NONCE_LEN],
        )
    };
    assert_ne!(
        aad(&Rec::new(&[("ab", "1")])),
        aad(&Rec::new(&[("a", "b1")]))
    );
    assert_eq!(aad(&Rec::new(&[])).len(), 1 + 2 + 32 + 1);
}

/// Seals `raw` at `$.a` (request, no context) with the given scratch.
fn seal_with(scratch: &mut Scratch, ring: &Keyring, key: &str, raw: &[u8]) -> String {
    let digest = digest_a();
    let field = field_a(&digest);
    let mut out = Vec::new();
    seal_into(
        ring.get(key).unwrap(),
        &field,
        raw,
        opts_random(),
        scratch,
        &mut out,
    )
    .unwrap();
    let s = String::from_utf8(out).unwrap();
    s[1..s.len() - 1].to_string()
}

fn opts_random() -> SealOptions {
    SealOptions {
        mode: Mode::Random,
        blind_index: false,
    }
}

fn nonce_of(env: &str) -> Vec<u8> {
    let payload = env.split('.').nth(2).unwrap();
    Base64UrlUnpadded::decode_vec(payload).unwrap()[..NONCE_LEN].to_vec()
}

fn with_nonce(env: &str, nonce: &[u8]) -> String {
    let mut parts: Vec<String> = env.split('.').map(str::to_string).collect();
    let mut payload = Base64UrlUnpadded::decode_vec(&parts[2]).unwrap();
    payload[..NONCE_LEN].copy_from_slice(nonce);
    parts[2] = Base64UrlUnpadded::encode_string(&payload);
    parts.join(".")
}

/// The fields of one body share the random prefix (one key derivation)
/// and count up; equal values at one place still give unrelated
/// envelopes, and each opens alone or beside the others.
#[test]
fn fields_of_one_body_share_the_derivation_not_the_envelope() {
    let ring = ring();
    let mut scratch = Scratch::default();
    let envs: Vec<String> = (0..3)
        .map(|_| seal_with(&mut scratch, &ring, "k1", b"\"jane@example.com\""))
        .collect();
    let nonces: Vec<Vec<u8>> = envs.iter().map(|e| nonce_of(e)).collect();
    for (i, n) in nonces.iter().enumerate() {
        assert_eq!(n[..NONCE_PREFIX_LEN], nonces[0][..NONCE_PREFIX_LEN]);
        assert_eq!(n[NONCE_PREFIX_LEN..], [i as u8]);
    }
    assert_ne!(envs[0], envs[1]);
    assert_ne!(envs[1], envs[2]);
    // The ciphertexts share nothing either (a shared keystream would show
    // as equal bytes after the nonce).
    let body = |e: &str| {
        Base64UrlUnpadded::decode_vec(e.split('.').nth(2).unwrap()).unwrap()[NONCE_LEN..].to_vec()
    };
    assert_ne!(body(&envs[0])[..8], body(&envs[1])[..8]);
    let mut reader = Scratch::default();
    for env in &envs {
        assert_eq!(
            open(&ring, "$.a", env, b"").unwrap(),
            b"\"jane@example.com\""
        );
        let mut out = Vec::new();
        let digest = digest_a();
        let field = field_a(&digest);
        open_into(&ring, &field, env.as_bytes(), &mut reader, &mut out).unwrap();
        assert_eq!(out, b"\"jane@example.com\"");
    }
    // A new body (a new scratch) draws another prefix.
    let other = seal_with(&mut Scratch::default(), &ring, "k1", b"1");
    assert_ne!(
        nonce_of(&other)[..NONCE_PREFIX_LEN],
        nonces[0][..NONCE_PREFIX_LEN]
    );
}

/// The counter is authenticated: an envelope given another field's counter,
/// or another body's prefix, does not open.
#[test]
fn a_changed_counter_or_prefix_fails() {
    let ring = ring();
    let mut scratch = Scratch::default();
    let first = seal_with(&mut scratch, &ring, "k1", b"\"a\"");
    let second = seal_with(&mut scratch, &ring, "k1", b"\"a\"");
    let n1 = nonce_of(&first);
    assert_eq!(
        open(&ring, "$.a", &with_nonce(&second, &n1), b""),
        Err(EnvelopeError::Tampered)
    );
    let mut prefix_changed = nonce_of(&second);
    prefix_changed[0] ^= 1;
    assert_eq!(
        open(&ring, "$.a", &with_nonce(&second, &prefix_changed), b""),
        Err(EnvelopeError::Tampered)
    );
}

/// Past 256 fields a body draws a new prefix rather than reuse a counter.
#[test]
fn a_body_past_the_counter_draws_a_new_prefix() {
    let mut scratch = Scratch::default();
    let first = scratch.random_nonce().unwrap();
    let prefix: [u8; NONCE_PREFIX_LEN] = first[..NONCE_PREFIX_LEN].try_into().unwrap();
    scratch.prefix = Some((prefix, u32::from(u8::MAX)));
    let last = scratch.random_nonce().unwrap();
    assert_eq!(last[..NONCE_PREFIX_LEN], prefix);
    assert_eq!(last[NONCE_PREFIX_LEN..], [0xff]);
    let next = scratch.random_nonce().unwrap();
    assert_ne!(next[..NONCE_PREFIX_LEN], prefix);
    assert_eq!(next[NONCE_PREFIX_LEN..], [0]);
}

/// Kept per-nonce keys belong to one key: envelopes of two keys under one
/// nonce, opened in turn through one scratch, each open under their own.
#[test]
fn kept_keys_are_never_used_for_another_key() {
    let ring = ring();
    let digest = digest_a();
    let field = field_a(&digest);
    let nonce = [7u8; NONCE_LEN];
    let sealed = |key: &str| {
        let mut out = Vec::new();
        seal_with_nonce(
            ring.get(key).unwrap(),
            &field,
            b"42",
            opts_random(),
            nonce,
            &mut out,
        )
        .unwrap();
        String::from_utf8(out[1..out.len() - 1].to_vec()).unwrap()
    };
    let (a, b) = (sealed("k1"), sealed("k2"));
    let mut reader = Scratch::default();
    for env in [&a, &b, &a, &b] {
        let mut out = Vec::new();
        open_into(&ring, &field, env.as_bytes(), &mut reader, &mut out).unwrap();
        assert_eq!(out, b"42");
    }
}

/// `D` of `$.a` in a request, no context.
fn digest_a() -> FieldDigest {
    FieldDigest::new(Flow::Request, "$.a", b"")
}

/// `$.a` in a request, no context, outside every record.
fn field_a(digest: &FieldDigest) -> Field<'_> {
    Field {
        path: "$.a",
        context: b"",
        digest,
        bound: Bound::NONE,
    }
}
