//! Stage microbenchmarks of dpp-guard's body path, run inside a Wasm VM.
//!
//! The host (bench/vm.py, wasmtime) writes a body into the module's memory
//! (`bench_body`), calls `bench_prepare` once, then `bench_stage(stage,
//! iterations)`, which runs one stage that many times and returns the
//! elapsed nanoseconds measured inside the VM (WASI monotonic clock), so
//! host-call overhead is not in the figures.
//!
//! The stages are the pieces of `dpp_core::protect::rewrite` taken apart:
//! validating scan, selection and splice copy, sealing / opening the
//! selected values, and the whole rewrite; stage 0 is the floor every JSON
//! rewrite is compared with (serde_json parse into a `Value`, serialize).
//! Keys come from the environment variables `DPP_BENCH_KEYS` (keyring text)
//! and `DPP_BENCH_LOG_KEY` (log key), as the plugin gets them from Envoy's
//! `host_env_keys`. Scrub and record are per request, not per body.

// The bench entry points are exported unmangled for the host: the only
// unsafe-flagged code in the workspace (no unsafe blocks).
#![allow(unsafe_code)]

use std::cell::RefCell;
use std::hint::black_box;
use std::time::Instant;

use dpp_core::access::chain::LogChain;
use dpp_core::scrub::{PiiKeys, Scrubber};
use dpp_core::{AccessRecord, Actions, LogKey, RequestLogFacts};

use dpp_core::crypto::envelope::{self, Scratch, SealOptions};
use dpp_core::crypto::FieldDigest;
use dpp_core::crypto::Keyring;
use dpp_core::json;
use dpp_core::policy::{Direction, FieldRules};
use dpp_core::{protect, Policy};

/// Stage numbers, shared with bench/vmconfigs.py.
/// The stages this build has, in report order.
pub const STAGES: &[u32] = &[
    FLOOR,
    PARSE,
    SELECT,
    SEAL,
    REWRITE_ENCRYPT,
    OPEN,
    REWRITE_DECRYPT,
    NAIVE,
    SCRUB,
    RECORD,
    PRIM_ENCRYPT_24B,
    PRIM_RANDOM_NONCE,
    PRIM_KEY_SETUP,
    REWRITE_ENCRYPT_OBJECTS,
    REWRITE_DECRYPT_OBJECTS,
];
const FLOOR: u32 = 0;
const PARSE: u32 = 1;
const SELECT: u32 = 2;
const SEAL: u32 = 3;
const REWRITE_ENCRYPT: u32 = 4;
const OPEN: u32 = 5;
const REWRITE_DECRYPT: u32 = 6;
const NAIVE: u32 = 7;
// Primitives, per call, to see what dominates the seal of one field.
const PRIM_ENCRYPT_24B: u32 = 8;
const PRIM_RANDOM_NONCE: u32 = 9;
const PRIM_KEY_SETUP: u32 = 10;
// Per request, whatever the body: what on_log does (host calls excluded).
const SCRUB: u32 = 11;
const RECORD: u32 = 12;
// `granularity: object`: one envelope per PII object of the preset.
const REWRITE_ENCRYPT_OBJECTS: u32 = 13;
const REWRITE_DECRYPT_OBJECTS: u32 = 14;

/// The fields reference filter (d) encrypts in each order: the preset's
/// fields that occur in the benchmark bodies (bench/orders.py).
const NAIVE_FIELDS: &[&[&str]] = &[
    &["BuyerInfo", "BuyerEmail"],
    &["BuyerInfo", "BuyerName"],
    &["BuyerInfo", "BuyerCounty"],
    &["BuyerInfo", "PurchaseOrderNumber"],
    &["BuyerInfo", "BuyerTaxInfo", "CompanyLegalName"],
    &["ShippingAddress", "Name"],
    &["ShippingAddress", "AddressLine1"],
    &["ShippingAddress", "AddressLine2"],
    &["ShippingAddress", "AddressLine3"],
    &["ShippingAddress", "City"],
    &["ShippingAddress", "County"],
    &["ShippingAddress", "District"],
    &["ShippingAddress", "StateOrRegion"],
    &["ShippingAddress", "PostalCode"],
    &["ShippingAddress", "Phone"],
];

const POLICY: &str = r#"{
  "version": 1,
  "keys": {"env": "DPP_BENCH_KEYS"},
  "routes": [
    {"name": "enc", "match": {"path": {"prefix": "/enc/"}},
     "encrypt": [{"direction": "request", "preset": "sp-api-orders"}]},
    {"name": "dec", "match": {"path": {"prefix": "/dec/"}},
     "decrypt": [{"direction": "request", "preset": "sp-api-orders"}]},
    {"name": "enc-obj", "match": {"path": {"prefix": "/enc-obj/"}},
     "encrypt": [{"direction": "request", "preset": "sp-api-orders", "granularity": "object"}]},
    {"name": "dec-obj", "match": {"path": {"prefix": "/dec-obj/"}},
     "decrypt": [{"direction": "request", "preset": "sp-api-orders", "granularity": "object"}]}
  ]
}"#;

/// One selected value: its canonical path, exact bytes, and the digest of
/// its position (precomputed by the policy, as the rewrite uses it).
struct Field {
    path: String,
    raw: Vec<u8>,
    digest: FieldDigest,
}

struct Bench {
    body: Vec<u8>,
    policy: Option<Policy>,
    keyring: Option<Keyring>,
    /// The values of `body` the encrypt rules select.
    plain: Vec<Field>,
    /// `body` after the encrypt rewrite, and the envelopes in it.
    encrypted: Vec<u8>,
    sealed: Vec<Field>,
    /// `body` after the encrypt rewrite with granularity object.
    encrypted_objects: Vec<u8>,
}

thread_local! {
    static BENCH: RefCell<Bench> = const { RefCell::new(Bench {
        body: Vec::new(), policy: None, keyring: None,
        plain: Vec::new(), encrypted: Vec::new(), sealed: Vec::new(),
        encrypted_objects: Vec::new(),
    }) };
}

/// Makes room for a body of `len` bytes and returns where to write it.
#[no_mangle]
pub extern "C" fn bench_body(len: u32) -> *mut u8 {
    BENCH.with(|b| {
        let mut b = b.borrow_mut();
        b.body.clear();
        b.body.resize(len as usize, 0);
        b.body.as_mut_ptr()
    })
}

/// Native runs (src/bin/native.rs): sets the body directly.
pub fn set_body(body: &[u8]) {
    BENCH.with(|b| {
        let mut b = b.borrow_mut();
        b.body.clear();
        b.body.extend_from_slice(body);
    })
}

/// Loads policy and keys, and derives the inputs of the later stages from
/// the body. 0 on success; a negative number names the step that failed.
#[no_mangle]
pub extern "C" fn bench_prepare() -> i32 {
    BENCH.with(|b| {
        let mut b = b.borrow_mut();
        let b = &mut *b;
        if b.policy.is_none() {
            let Ok(policy) = Policy::from_json(POLICY.as_bytes()) else {
                return -1;
            };
            let Some(Ok(keyring)) = policy
                .keys
                .as_ref()
                .map(|k| k.load(|name| std::env::var(name).ok()))
            else {
                return -2;
            };
            b.policy = Some(policy);
            b.keyring = Some(keyring);
        }
        let policy = b.policy.as_ref();
        let (Some(enc), Some(_)) = (
            rules(policy, Direction::Request, 0),
            rules(policy, Direction::Request, 1),
        ) else {
            return -3;
        };
        b.plain = collect(&b.body, enc);
        let Some(keyring) = b.keyring.as_ref() else {
            return -2;
        };
        b.encrypted = match protect::rewrite(enc, keyring, &b.body) {
            Ok(Some(out)) => out,
            _ => return -4,
        };
        b.sealed = collect(&b.encrypted, enc);
        let Some(enc_obj) = rules(policy, Direction::Request, 2) else {
            return -3;
        };
        b.encrypted_objects = match protect::rewrite(enc_obj, keyring, &b.body) {
            Ok(Some(out)) => out,
            _ => return -4,
        };
        0
    })
}

fn rules(policy: Option<&Policy>, dir: Direction, route: usize) -> Option<&FieldRules> {
    policy?.routes.get(route)?.fields(dir)
}

fn collect(body: &[u8], rules: &FieldRules) -> Vec<Field> {
    let mut out = Vec::new();
    let _ = json::splice(body, &rules.automaton, |sel, w| {
        let context = rules
            .rules
            .get(sel.rule)
            .map(|r| r.context.as_slice())
            .unwrap_or_default();
        out.push(Field {
            path: sel.path.to_string(),
            raw: sel.raw.to_vec(),
            digest: rules
                .digest(sel.state)
                .copied()
                .unwrap_or_else(|| FieldDigest::new(rules.direction.flow(), sel.path, context)),
        });
        w.extend_from_slice(sel.raw);
        Ok::<(), ()>(())
    });
    out
}

/// Runs `stage` `iterations` times; elapsed nanoseconds, or u64::MAX when
/// the stage is unknown or failed (the host refuses such a figure).
#[no_mangle]
pub extern "C" fn bench_stage(stage: u32, iterations: u32) -> u64 {
    BENCH.with(|b| {
        let b = b.borrow();
        let start = Instant::now();
        for _ in 0..iterations {
            if !run(&b, stage) {
                return u64::MAX;
            }
        }
        u64::try_from(start.elapsed().as_nanos()).unwrap_or(u64::MAX)
    })
}

fn run(b: &Bench, stage: u32) -> bool {
    let enc = rules(b.policy.as_ref(), Direction::Request, 0);
    let dec = rules(b.policy.as_ref(), Direction::Request, 1);
    let keyring = b.keyring.as_ref();
    match (stage, enc, dec, keyring) {
        (FLOOR, ..) => serde_json::from_slice::<serde_json::Value>(&b.body)
            .and_then(|v| serde_json::to_vec(&v))
            .map(|out| !black_box(out).is_empty())
            .unwrap_or(false),
        (PARSE, ..) => json::validate(black_box(&b.body)).is_ok(),
        // Scan + select + copy every byte to a new body, values unchanged:
        // the rewrite without cryptography.
        (SELECT, Some(enc), ..) => json::splice(&b.body, &enc.automaton, |sel, w| {
            w.extend_from_slice(sel.raw);
            Ok::<(), ()>(())
        })
        .map(|o| black_box(o).is_some())
        .unwrap_or(false),
        (SEAL, Some(enc), _, Some(keyring)) => {
            let mut scratch = Scratch::default();
            let mut out = Vec::with_capacity(256);
            let key = keyring.primary();
            b.plain.iter().all(|f| {
                out.clear();
                let Some(rule) = enc.rules.first() else {
                    return false;
                };
                let opts = SealOptions {
                    mode: rule.mode,
                    blind_index: rule.blind_index,
                };
                let field = envelope::Field {
                    path: &f.path,
                    context: &rule.context,
                    digest: &f.digest,
                    bound: json::Bound::NONE,
                };
                envelope::seal_into(key, &field, &f.raw, opts, &mut scratch, &mut out).is_ok()
            })
        }
        (REWRITE_ENCRYPT, Some(enc), _, Some(keyring)) => {
            matches!(protect::rewrite(enc, keyring, &b.body), Ok(Some(o)) if !black_box(&o).is_empty())
        }
        (OPEN, _, Some(dec), Some(keyring)) => {
            let mut scratch = Scratch::default();
            let mut out = Vec::with_capacity(256);
            let context = dec
                .rules
                .first()
                .map(|r| r.context.as_slice())
                .unwrap_or_default();
            b.sealed.iter().all(|f| {
                out.clear();
                let text = match f.raw.as_slice() {
                    [b'"', inner @ .., b'"'] => inner,
                    _ => return false,
                };
                let field = envelope::Field {
                    path: &f.path,
                    context,
                    digest: &f.digest,
                    bound: json::Bound::NONE,
                };
                envelope::open_into(keyring, &field, text, &mut scratch, &mut out).is_ok()
            })
        }
        (REWRITE_DECRYPT, _, Some(dec), Some(keyring)) => {
            matches!(protect::rewrite(dec, keyring, &b.encrypted), Ok(Some(o)) if !black_box(&o).is_empty())
        }
        (REWRITE_ENCRYPT_OBJECTS, .., Some(keyring)) => {
            let Some(rules) = rules(b.policy.as_ref(), Direction::Request, 2) else {
                return false;
            };
            matches!(protect::rewrite(rules, keyring, &b.body), Ok(Some(o)) if !black_box(&o).is_empty())
        }
        (REWRITE_DECRYPT_OBJECTS, .., Some(keyring)) => {
            let Some(rules) = rules(b.policy.as_ref(), Direction::Request, 3) else {
                return false;
            };
            matches!(protect::rewrite(rules, keyring, &b.encrypted_objects), Ok(Some(o)) if !black_box(&o).is_empty())
        }
        (NAIVE, ..) => naive(&b.body, &NAIVE_KEY).is_some(),
        (PRIM_ENCRYPT_24B | PRIM_RANDOM_NONCE | PRIM_KEY_SETUP, ..) => primitive(stage),
        (SCRUB | RECORD, ..) => LOGGING.with(|l| {
            let mut l = l.borrow_mut();
            match l.as_mut() {
                Some(l) => l.run(stage),
                None => false,
            }
        }),
        _ => false,
    }
}

/// The access-record side, set up once: a log key from `DPP_BENCH_LOG_KEY`
/// (as the plugin gets it), the keyed scrubber and the record chain.
struct Logging {
    scrubber: Scrubber,
    chain: LogChain,
    facts: RequestLogFacts,
}

thread_local! {
    static LOGGING: RefCell<Option<Logging>> = RefCell::new(Logging::new());
}

/// A request with PII in its query, a user agent and a client address: the
/// inputs the scrubber works on for every record.
const PII_PATH: &str = "/orders/v0/orders?BuyerEmail=jane.doe%40example.com&MarketplaceIds=A1PA6795UKMFR9&Phone=%2B12065550142";
const USER_AGENT: &str = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Safari/537.36";

impl Logging {
    fn new() -> Option<Logging> {
        let key = LogKey::parse(&std::env::var("DPP_BENCH_LOG_KEY").ok()?).ok()?;
        Some(Logging {
            scrubber: Scrubber::new(Some(key.pseudonymizer()), PiiKeys::default()),
            chain: LogChain::new("bench".into(), Some(key.chain_key())),
            facts: RequestLogFacts {
                time_unix_nanos: 1_795_910_400_000_000_000,
                request_id: Some("0f8fad5b-d9cb-469f-a165-70867728950e".into()),
                method: "POST".into(),
                path: PII_PATH.into(),
                status: Some(200),
                route_name: Some("orders".into()),
                upstream_cluster: Some("sp_api".into()),
                client_address: Some("203.0.113.7:50123".into()),
                headers: vec![("user-agent".into(), USER_AGENT.into())],
                ..RequestLogFacts::default()
            },
        })
    }

    fn run(&mut self, stage: u32) -> bool {
        match stage {
            // Scrub the request's path, one header and the client address.
            SCRUB => {
                let path = self.scrubber.url(black_box(PII_PATH));
                let ua = self.scrubber.header("user-agent", black_box(USER_AGENT));
                let client = self.scrubber.client_address(black_box("203.0.113.7:50123"));
                black_box((path, ua, client));
                true
            }
            // Build the whole record (scrubbing included) and seal it into the chain.
            _ => {
                let record = AccessRecord::build(&self.facts, &Actions::default(), &self.scrubber);
                !black_box(self.chain.seal(record)).is_empty()
            }
        }
    }
}

/// One AES-256-GCM-SIV seal of a 24-byte value with a ready cipher and a
/// fixed nonce; one 12-byte nonce from WASI random_get; one key setup.
fn primitive(stage: u32) -> bool {
    use aes_gcm_siv::aead::{AeadInPlace, KeyInit};
    use aes_gcm_siv::{Aes256GcmSiv, Nonce};
    thread_local! {
        static CIPHER: Option<Aes256GcmSiv> = Aes256GcmSiv::new_from_slice(&NAIVE_KEY).ok();
    }
    match stage {
        PRIM_ENCRYPT_24B => CIPHER.with(|c| {
            let mut buf = *b"Maria Schmidt, Apt 42 xx";
            c.as_ref().is_some_and(|c| {
                c.encrypt_in_place_detached(Nonce::from_slice(&[1; 12]), b"", &mut buf)
                    .map(|t| black_box(t).len() == 16)
                    .unwrap_or(false)
            })
        }),
        PRIM_RANDOM_NONCE => {
            let mut n = [0u8; 12];
            getrandom::fill(&mut n).is_ok() && black_box(n).len() == 12
        }
        _ => black_box(Aes256GcmSiv::new_from_slice(black_box(&NAIVE_KEY))).is_ok(),
    }
}

/// A fixed key for the naive reference only (it never protects anything).
const NAIVE_KEY: [u8; 32] = [7; 32];

/// Reference filter (d) in the VM: `serde_json::Value`, a new cipher and a
/// random nonce per field, base64 envelope, serialize.
fn naive(body: &[u8], key: &[u8; 32]) -> Option<Vec<u8>> {
    use aes_gcm_siv::aead::{Aead, KeyInit};
    use aes_gcm_siv::{Aes256GcmSiv, Nonce};
    use serde_json::Value;

    let mut v: Value = serde_json::from_slice(body).ok()?;
    let payload = v.get_mut("payload")?;
    let orders: Vec<&mut Value> = match payload.get_mut("Orders") {
        Some(Value::Array(a)) => a.iter_mut().collect(),
        _ => vec![payload],
    };
    for order in orders {
        for path in NAIVE_FIELDS {
            let mut at = Some(&mut *order);
            for seg in *path {
                at = at.and_then(|x| x.get_mut(*seg));
            }
            if let Some(Value::String(s)) = at {
                let cipher = Aes256GcmSiv::new_from_slice(key).ok()?;
                let mut nonce = [0u8; 12];
                getrandom::fill(&mut nonce).ok()?;
                let ct = cipher
                    .encrypt(Nonce::from_slice(&nonce), s.as_bytes())
                    .ok()?;
                let mut sealed = nonce.to_vec();
                sealed.extend_from_slice(&ct);
                *s = <base64ct::Base64 as base64ct::Encoding>::encode_string(&sealed);
            }
        }
    }
    serde_json::to_vec(&v).ok()
}
