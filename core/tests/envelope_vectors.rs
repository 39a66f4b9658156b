//! Envelope test vectors (core/testdata/envelope-vectors.json), shared with
//! the CLI tests and the npm package: each vector is sealed here with its
//! given nonce and must give exactly the envelope in the file, its digest
//! and authenticated data must be the bytes in the file, and the document
//! holding it must decrypt under the vector's rule through the same code
//! the filter runs (which finds path, direction and record by itself).
//!
//! `DPP_REGENERATE_VECTORS=1 cargo test -p dpp-guard-core --test envelope_vectors`
//! rewrites the file after a deliberate format change (docs/envelope.md
//! must follow).

use dpp_core::crypto::envelope::{self, aad_bytes, Field, SealOptions};
use dpp_core::crypto::{FieldDigest, Flow, Keyring, Mode};
use dpp_core::json::Bound;
use dpp_core::policy::{Direction, Policy};
use dpp_core::protect;
use serde_json::{json, Value};

const FILE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/testdata/envelope-vectors.json"
);
// Test keys only: bytes 0x00..0x1f and 0x20..0x3f.
const KEYRING: &str = "k1=AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8 \
                       k2=ICEiIyQlJicoKSorLC0uLzAxMjM0NTY3ODk6Ozw9Pj8 primary=k1";

#[derive(Clone)]
struct Spec {
    name: &'static str,
    key_id: &'static str,
    direction: Direction,
    path: &'static str,
    context: &'static str,
    /// (context-field selector, member name, canonical value)
    bound: &'static [(&'static str, &'static str, &'static str)],
    mode: Mode,
    blind_index: bool,
    nonce: [u8; 12],
    plaintext: &'static str,
    /// Selectors of the rule (the path itself, or a preset's).
    rule: Value,
    /// The document with `"@"` where the value goes.
    template: &'static str,
}

fn specs() -> Vec<Spec> {
    let first = Spec {
        name: "random mode, request, no context",
        key_id: "k1",
        direction: Direction::Request,
        path: "$.payload.BuyerEmail",
        context: "",
        bound: &[],
        mode: Mode::Random,
        blind_index: false,
        nonce: *b"\x00\x01\x02\x03\x04\x05\x06\x07\x08\x09\x0a\x00",
        plaintext: r#""buyer@example.com""#,
        rule: json!({"selectors": ["$.payload.BuyerEmail"]}),
        template: r#"{"payload":{"AmazonOrderId":"902-3159896-1390916","BuyerEmail":"@"}}"#,
    };
    // The same value at the same place, as the next field of the body of
    // the first vector: same RFC 8452 nonce (the prefix), counter 1 in the
    // authenticated data, an unrelated envelope.
    let second_field = Spec {
        name: "random mode, request, second field of a body (counter 1)",
        nonce: *b"\x00\x01\x02\x03\x04\x05\x06\x07\x08\x09\x0a\x01",
        ..first.clone()
    };
    vec![
        first,
        second_field,
        Spec {
            name: "random mode, response, context, number value",
            key_id: "k1",
            direction: Direction::Response,
            path: "$.payload.ShippingAddress.PostalCode",
            context: "sp-api-orders",
            bound: &[],
            mode: Mode::Random,
            blind_index: false,
            nonce: [0xa5; 12],
            plaintext: "98109",
            rule: json!({"selectors": ["$.payload.ShippingAddress.PostalCode"], "context": "sp-api-orders"}),
            template: r#"{"payload":{"ShippingAddress":{"PostalCode":"@","CountryCode":"US"}}}"#,
        },
        Spec {
            name: "record-bound, per array element",
            key_id: "k1",
            direction: Direction::Response,
            path: "$.payload.Orders[*].BuyerInfo.BuyerEmail",
            context: "sp-api-orders",
            bound: &[(
                "$.payload.Orders[*].AmazonOrderId",
                "AmazonOrderId",
                r#""902-3159896-1390916""#,
            )],
            mode: Mode::Random,
            blind_index: false,
            nonce: *b"record-bound",
            plaintext: r#""jq7f2k9x@marketplace.example.com""#,
            rule: json!({"selectors": ["$.payload.Orders[*].BuyerInfo.BuyerEmail"], "context": "sp-api-orders",
                         "context_fields": ["$.payload.Orders[*].AmazonOrderId", "$.payload.AmazonOrderId"]}),
            template: r#"{"payload":{"Orders":[{"BuyerInfo":{"BuyerEmail":"@"},"AmazonOrderId":"902-3159896-1390916"}]}}"#,
        },
        Spec {
            name: "record-bound, two fields, object value, second key",
            key_id: "k2",
            direction: Direction::Request,
            path: "$.payload.ShippingAddress",
            context: "tenant-eu-1",
            bound: &[
                (
                    "$.payload.AmazonOrderId",
                    "AmazonOrderId",
                    r#""111-2222222-3333333""#,
                ),
                (
                    "$.payload.MarketplaceId",
                    "MarketplaceId",
                    r#""A1PA6795UKMFR9""#,
                ),
            ],
            mode: Mode::Random,
            blind_index: false,
            nonce: [0xff; 12],
            plaintext: r#"{"Name": "Jane Q. Buyer", "City": "Leipzig", "PostalCode": "04109"}"#,
            rule: json!({"selectors": ["$.payload.ShippingAddress"], "context": "tenant-eu-1",
                         "context_fields": ["$.payload.AmazonOrderId", "$.payload.MarketplaceId"]}),
            template: r#"{"payload":{"AmazonOrderId":"111-2222222-3333333","ShippingAddress":"@","MarketplaceId":"A1PA6795UKMFR9"}}"#,
        },
        Spec {
            name: "deterministic mode with blind index",
            key_id: "k1",
            direction: Direction::Request,
            path: "$.payload.BuyerEmail",
            context: "tenant-a",
            bound: &[],
            mode: Mode::Deterministic,
            blind_index: true,
            nonce: [0; 12], // synthetic: derived, and written to the file
            plaintext: r#""buyer@example.com""#,
            rule: json!({"selectors": ["$.payload.BuyerEmail"], "context": "tenant-a"}),
            template: r#"{"payload":{"BuyerEmail":"@"}}"#,
        },
        Spec {
            name: "member name that is not an identifier",
            key_id: "k1",
            direction: Direction::Request,
            path: r#"$.payload["Buyer Email"]"#,
            context: "",
            bound: &[],
            mode: Mode::Random,
            blind_index: false,
            nonce: *b"\x10\x11\x12\x13\x14\x15\x16\x17\x18\x19\x1a\x1b",
            plaintext: "null",
            rule: json!({"selectors": ["$.payload['Buyer Email']"]}),
            template: r#"{"payload":{"Buyer Email":"@"}}"#,
        },
    ]
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

fn flow(d: Direction) -> Flow {
    d.flow()
}

fn build(spec: &Spec, ring: &Keyring) -> Value {
    let digest = FieldDigest::new(flow(spec.direction), spec.path, spec.context.as_bytes());
    let names: Vec<Box<str>> = spec.bound.iter().map(|(_, n, _)| (*n).into()).collect();
    let mut arena = Vec::new();
    let mut ranges = Vec::new();
    for (_, _, v) in spec.bound {
        let a = arena.len();
        arena.extend_from_slice(v.as_bytes());
        ranges.push((a, arena.len()));
    }
    let field = Field {
        path: spec.path,
        context: spec.context.as_bytes(),
        digest: &digest,
        bound: Bound::from_parts(&names, &ranges, &arena),
    };
    let key = ring.get(spec.key_id).unwrap();
    let opts = SealOptions {
        mode: spec.mode,
        blind_index: spec.blind_index,
    };
    let mut out = Vec::new();
    match spec.mode {
        Mode::Random => envelope::seal_with_nonce(
            key,
            &field,
            spec.plaintext.as_bytes(),
            opts,
            spec.nonce,
            &mut out,
        )
        .unwrap(),
        Mode::Deterministic => envelope::seal_into(
            key,
            &field,
            spec.plaintext.as_bytes(),
            opts,
            &mut Default::default(),
            &mut out,
        )
        .unwrap(),
    }
    let quoted = String::from_utf8(out).unwrap();
    let env = &quoted[1..quoted.len() - 1];
    // The nonce actually used (the synthetic one in deterministic mode).
    let payload = env.split('.').nth(2).unwrap();
    let payload = base64url_decode(payload);
    let nonce: [u8; 12] = payload[..12].try_into().unwrap();
    let aad = aad_bytes(spec.key_id, &field, &nonce);
    // Any RFC 8452 implementation opens the envelope: its nonce is the
    // first eleven nonce bytes and a zero byte, its key the AEAD subkey.
    let mut aead_nonce = [0u8; 12];
    aead_nonce[..11].copy_from_slice(&nonce[..11]);
    let mut canonical = Vec::new();
    let plaintext = match spec.mode {
        Mode::Random => spec.plaintext.as_bytes(),
        Mode::Deterministic => {
            dpp_core::json::canonical(spec.plaintext.as_bytes(), &mut canonical).unwrap();
            &canonical
        }
    };
    assert_eq!(
        rfc8452_seal(aead_key(spec.key_id), &aead_nonce, &aad, plaintext),
        payload[12..],
        "{}: not the RFC 8452 ciphertext",
        spec.name
    );
    let mut rule = spec.rule.clone();
    rule["direction"] = json!(spec.direction.name());
    let document = spec.template.replace(r#""@""#, &quoted);
    let decrypted = spec.template.replace(r#""@""#, spec.plaintext);
    json!({
        "name": spec.name,
        "keyring": KEYRING,
        "key_id": spec.key_id,
        "direction": spec.direction.name(),
        "path": spec.path,
        "context": spec.context,
        "bound": spec.bound.iter().map(|(sel, n, v)| json!({"selector": sel, "name": n, "value": v})).collect::<Vec<_>>(),
        "mode": match spec.mode { Mode::Random => "random", Mode::Deterministic => "deterministic" },
        "blind_index": spec.blind_index,
        "nonce": hex(&nonce),
        "aead_nonce": hex(&aead_nonce),
        "plaintext": spec.plaintext,
        "digest": hex(&digest.0),
        "aad": hex(&aad),
        "envelope": env,
        "rule": rule,
        "document": document,
        "decrypted": decrypted,
    })
}

/// The AEAD subkey of a test key (docs/envelope.md, key expansion): the
/// master keys are bytes 0x00..0x1f (k1) and 0x20..0x3f (k2).
fn aead_key(id: &str) -> [u8; 32] {
    let first = if id == "k1" { 0u8 } else { 0x20 };
    let master: [u8; 32] = std::array::from_fn(|i| first + i as u8);
    *dpp_core::kdf::subkey(&master, dpp_core::kdf::Purpose::Aead)
}

fn rfc8452_seal(key: [u8; 32], nonce: &[u8; 12], aad: &[u8], plaintext: &[u8]) -> Vec<u8> {
    use aes_gcm_siv::aead::{Aead, KeyInit, Payload};
    aes_gcm_siv::Aes256GcmSiv::new(&key.into())
        .encrypt(
            nonce.into(),
            Payload {
                msg: plaintext,
                aad,
            },
        )
        .unwrap()
}

fn base64url_decode(s: &str) -> Vec<u8> {
    use base64ct::{Base64UrlUnpadded, Encoding};
    Base64UrlUnpadded::decode_vec(s).unwrap()
}

#[test]
fn vectors_match_this_build() {
    let ring = Keyring::parse(KEYRING).unwrap();
    let built: Vec<Value> = specs().iter().map(|s| build(s, &ring)).collect();
    let doc = json!({
        "description": "dpp-guard envelope test vectors (format dpg1, docs/envelope.md). Test keys only. \
                        For each vector: sealing `plaintext` at `path` (direction, context, bound fields) \
                        under key `key_id` of `keyring` with `nonce` gives `envelope`; `digest` is D and \
                        `aad` the authenticated data; `document` decrypted under `rule` (a decrypt rule) \
                        gives `decrypted`.",
        "vectors": built,
    });
    if std::env::var_os("DPP_REGENERATE_VECTORS").is_some() {
        std::fs::write(FILE, serde_json::to_string_pretty(&doc).unwrap() + "\n").unwrap();
    }
    let file: Value = serde_json::from_str(&std::fs::read_to_string(FILE).unwrap()).unwrap();
    assert_eq!(
        file, doc,
        "core/testdata/envelope-vectors.json differs from this build"
    );
}

/// The file alone is enough to check an implementation: every document
/// decrypts through the filter's rewrite under its rule, and every change
/// of direction, path or bound value fails.
#[test]
fn vector_documents_decrypt_under_their_rules() {
    let file: Value = serde_json::from_str(&std::fs::read_to_string(FILE).unwrap()).unwrap();
    let vectors = file["vectors"].as_array().unwrap();
    assert!(vectors.len() >= 6);
    for v in vectors {
        let name = v["name"].as_str().unwrap();
        let ring = Keyring::parse(v["keyring"].as_str().unwrap()).unwrap();
        let policy = |rule: &Value| {
            Policy::from_json(
                json!({"version": 1, "keys": {"env": "K"},
                       "routes": [{"name": "r", "decrypt": [rule]}]})
                .to_string()
                .as_bytes(),
            )
            .unwrap()
        };
        let dir = |d: &str| {
            if d == "request" {
                Direction::Request
            } else {
                Direction::Response
            }
        };
        let rule = &v["rule"];
        let p = policy(rule);
        let rules = p.routes[0]
            .fields(dir(v["direction"].as_str().unwrap()))
            .unwrap();
        let out = protect::rewrite(rules, &ring, v["document"].as_str().unwrap().as_bytes())
            .unwrap_or_else(|e| panic!("{name}: {e:?}"))
            .unwrap();
        assert_eq!(
            serde_json::from_slice::<Value>(&out).unwrap(),
            serde_json::from_str::<Value>(v["decrypted"].as_str().unwrap()).unwrap(),
            "{name}"
        );
        // The other direction does not open it.
        let mut other = rule.clone();
        other["direction"] = json!(if rule["direction"] == "request" {
            "response"
        } else {
            "request"
        });
        let p2 = policy(&other);
        let other_rules = p2.routes[0]
            .fields(dir(other["direction"].as_str().unwrap()))
            .unwrap();
        assert!(
            protect::rewrite(
                other_rules,
                &ring,
                v["document"].as_str().unwrap().as_bytes()
            )
            .is_err(),
            "{name}: opened in the other direction"
        );
        // Every bound value changed: does not open.
        for b in v["bound"].as_array().unwrap() {
            let value = b["value"].as_str().unwrap();
            let changed =
                v["document"]
                    .as_str()
                    .unwrap()
                    .replacen(value, r#""000-0000000-0000000""#, 1);
            assert!(
                protect::rewrite(rules, &ring, changed.as_bytes()).is_err(),
                "{name}: rebound"
            );
        }
        assert_eq!(unhex(v["nonce"].as_str().unwrap()).len(), 12);
        // D and the AAD from their definitions in docs/envelope.md, byte by byte.
        use sha2::{Digest, Sha256};
        let (path, ctx) = (v["path"].as_str().unwrap(), v["context"].as_str().unwrap());
        let mut h = Sha256::new();
        h.update(b"dpg1/aad");
        h.update([if v["direction"] == "request" { 1u8 } else { 2 }]);
        h.update((path.len() as u32).to_be_bytes());
        h.update(path);
        h.update((ctx.len() as u32).to_be_bytes());
        h.update(ctx);
        let d: [u8; 32] = h.finalize().into();
        assert_eq!(hex(&d), v["digest"].as_str().unwrap(), "{name}");
        let kid = v["key_id"].as_str().unwrap();
        let mut aad = vec![kid.len() as u8];
        aad.extend_from_slice(kid.as_bytes());
        aad.extend_from_slice(&d);
        let bound = v["bound"].as_array().unwrap();
        if !bound.is_empty() {
            aad.extend_from_slice(&(bound.len() as u32).to_be_bytes());
            for b in bound {
                for part in [b["name"].as_str().unwrap(), b["value"].as_str().unwrap()] {
                    aad.extend_from_slice(&(part.len() as u32).to_be_bytes());
                    aad.extend_from_slice(part.as_bytes());
                }
            }
        }
        // The field counter: the last nonce byte, authenticated; the RFC
        // 8452 nonce is the first eleven and a zero byte.
        let nonce = unhex(v["nonce"].as_str().unwrap());
        aad.extend_from_slice(&nonce[11..]);
        assert_eq!(hex(&aad), v["aad"].as_str().unwrap(), "{name}");
        let mut aead_nonce = nonce[..11].to_vec();
        aead_nonce.push(0);
        assert_eq!(
            hex(&aead_nonce),
            v["aead_nonce"].as_str().unwrap(),
            "{name}"
        );
    }
}
