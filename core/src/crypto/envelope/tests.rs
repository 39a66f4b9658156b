use super::*;
use crate::crypto::Keyring;
use proptest::prelude::*;
use serde_json::Value;

const K1: &str = "k1=AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8";
const K2: &str = "k2=ICEiIyQlJicoKSorLC0uLzAxMjM0NTY3ODk6Ozw9Pj8";
// The same key material as K1 under another id.
const K1_AS_K3: &str = "k3=AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8";

fn ring() -> Keyring {
    Keyring::parse(&format!("{K1} {K2} {K1_AS_K3} primary=k1")).unwrap()
}

fn opts(mode: Mode, context: &[u8], blind_index: bool) -> SealOptions<'_> {
    SealOptions {
        mode,
        context,
        blind_index,
    }
}

/// Seals and returns the envelope text without the JSON quotes.
fn seal(ring: &Keyring, key: &str, path: &str, raw: &[u8], o: SealOptions<'_>) -> String {
    let mut out = Vec::new();
    seal_into(
        ring.get(key).unwrap(),
        path,
        raw,
        o,
        &mut Scratch::default(),
        &mut out,
    )
    .unwrap();
    let s = String::from_utf8(out).unwrap();
    s[1..s.len() - 1].to_string()
}

fn open(ring: &Keyring, path: &str, env: &str, context: &[u8]) -> Result<Vec<u8>, EnvelopeError> {
    let mut out = Vec::new();
    open_into(
        ring,
        path,
        env.as_bytes(),
        context,
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
    assert_eq!(
        seal_into(
            ring.primary(),
            "$.a",
            b"{",
            opts(Mode::Deterministic, b"", false),
            &mut Scratch::default(),
            &mut out
        ),
        Err(EnvelopeError::Seal)
    );
}

/// A fixed envelope produced by this build: if the format or the key
/// derivation ever changes, this test says so (and docs/envelope.md must
/// follow).
#[test]
fn known_answer_deterministic_envelope() {
    let ring = ring();
    let env = seal(
        &ring,
        "k1",
        "$.payload.BuyerEmail",
        br#""buyer@example.com""#,
        opts(Mode::Deterministic, b"tenant-a", true),
    );
    assert_eq!(env, include_str!("known_answer.txt").trim());
    assert_eq!(
        open(&ring, "$.payload.BuyerEmail", &env, b"tenant-a").unwrap(),
        br#""buyer@example.com""#
    );
}
