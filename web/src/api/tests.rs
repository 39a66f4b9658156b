//! Native tests of the exports' bodies: what a JS caller gets back is what
//! the filter and the CLI decide, in the same words.

use super::*;
use crate::simulate;

const K1: &str = "k1=AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8";

const POLICY: &str = r#"{
  "version": 1,
  "keys": {"env": "DPP_GUARD_KEYS"},
  "logging": {"request_headers": ["x-seller"]},
  "routes": [
    {"name": "off", "match": {"path": {"prefix": "/off/"}}, "kill_switch": true},
    {"name": "orders", "match": {"path": {"prefix": "/orders/"}}, "no_store": true,
     "encrypt": [{"direction": "request", "preset": "sp-api-orders", "context": "sp-api-orders"}],
     "decrypt": [{"direction": "response", "preset": "sp-api-orders", "context": "sp-api-orders"}],
     "body": {"max_bytes": 4096}}
  ]
}"#;

const BUYER: &str = r#"{"payload": {"AmazonOrderId": "902-3159896-1390916", "BuyerEmail": "jq7f2k9x@marketplace.example.com", "BuyerName": "Jane Q. Buyer"}}"#;

fn ring() -> Keyring {
    parse_keyring(K1).unwrap()
}

fn policy() -> Policy {
    Policy::from_json(POLICY.as_bytes()).unwrap()
}

fn json(v: &impl Serialize) -> serde_json::Value {
    serde_json::to_value(v).unwrap()
}

#[test]
fn policy_errors_name_the_field_in_the_plugins_words() {
    let cases = [
        (
            r#"{"version":1,"routes":[{"name":"a","match":{"path":{"regex":"("}}}]}"#,
            "routes[0].match.path.regex",
        ),
        (
            r#"{"version":1,"routes":[{"name":"a","mtach":{}}]}"#,
            "routes[0].mtach",
        ),
        (r#"{"version":2}"#, "version"),
        (
            r#"{"version":1,"routes":[{"name":"a","encrypt":[{"direction":"request","selectors":["$.a"]}]}]}"#,
            "keys",
        ),
    ];
    for (doc, field) in cases {
        let expected = Policy::from_json(doc.as_bytes()).unwrap_err();
        let got = check_policy(doc);
        let problem = got.problem().expect("refused");
        assert_eq!(problem.field.as_deref(), Some(field), "{doc}");
        // The plugin logs `dpp-guard: {PolicyError}`; the message is that text.
        assert_eq!(problem.message, expected.to_string());
        assert!(problem.message.starts_with("invalid policy: field `"));
        let wire = json(&got);
        assert_eq!(wire["ok"], false);
        assert_eq!(wire["error"]["field"], field);
    }
}

#[test]
fn a_valid_policy_is_summarised() {
    let got = json(&check_policy(POLICY));
    assert_eq!(got["ok"], true);
    assert_eq!(got["routes"][1]["name"], "orders");
    assert_eq!(got["routes"][1]["request"], "encrypt");
    assert_eq!(got["routes"][1]["response"], "decrypt");
    assert_eq!(got["routes"][0]["kill_switch"], true);
    assert_eq!(got["keys"], "env DPP_GUARD_KEYS");
    assert_eq!(got["sha256"].as_str().unwrap().len(), 64);
}

#[test]
fn keyring_bytes_are_wiped_whether_they_parse_or_not() {
    let mut good = K1.as_bytes().to_vec();
    assert!(parse_keyring_bytes(&mut good).is_ok());
    assert!(good.iter().all(|b| *b == 0));

    let mut bad = b"k1=AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh".to_vec();
    let err = parse_keyring_bytes(&mut bad).unwrap_err();
    assert!(bad.iter().all(|b| *b == 0));
    assert!(!err.contains("AAEC"), "errors never echo key text: {err}");
}

#[test]
fn generated_keys_parse() {
    let entry = generate_key_entry("t1").unwrap();
    assert!(entry.starts_with("t1="));
    assert_eq!(parse_keyring(&entry).unwrap().primary().id().as_str(), "t1");
    assert!(generate_key_entry("no spaces").is_err());
    let log_key = generate_log_key().unwrap();
    assert!(dpp_core::LogKey::parse(&log_key).is_ok());
    assert_ne!(*log_key, *generate_log_key().unwrap());
}

#[test]
fn sealed_values_open_only_at_their_path_and_context() {
    let ring = ring();
    let at = r#"{"direction":"response","context":"t","bound":[["AmazonOrderId","\"1\""]]}"#;
    let sealed = seal_value(&ring, "$.payload.BuyerEmail", br#""a@example.com""#, at);
    let env = &sealed.value().unwrap().envelope;
    assert!(env.starts_with("dpg1.k1."), "{env}");
    let opened = open_envelope(&ring, "$.payload.BuyerEmail", env, at);
    assert_eq!(opened.value().unwrap().value, r#""a@example.com""#);
    // The bound value is compared in canonical form.
    let spaced = r#"{"direction":"response","context":"t","bound":[["AmazonOrderId"," \"1\" "]]}"#;
    assert!(open_envelope(&ring, "$.payload.BuyerEmail", env, spaced).is_ok());
    for (path, pos) in [
        ("$.payload.BuyerName", at),
        ("$.payload.BuyerEmail", &at.replace("\"t\"", "\"u\"")),
        ("$.payload.BuyerEmail", &at.replace("response", "request")),
        (
            "$.payload.BuyerEmail",
            &at.replace("\\\"1\\\"", "\\\"2\\\""),
        ),
        (
            "$.payload.BuyerEmail",
            r#"{"direction":"response","context":"t"}"#,
        ),
    ] {
        let refused = open_envelope(&ring, path, env, pos);
        assert_eq!(
            refused.problem().map(|p| p.code.as_str()),
            Some("envelope_authentication_failed"),
            "{path} {pos}"
        );
    }
    let bad = seal_value(&ring, "$.a", b"1", r#"{"mode":"sideways"}"#);
    assert_eq!(bad.problem().unwrap().code, "bad_options");
}

#[test]
fn protect_runs_the_routes_rules_both_ways_and_refuses_a_changed_byte() {
    let (p, ring) = (policy(), ring());
    let sealed = protect(&p, &ring, "orders", "request", None, BUYER.as_bytes());
    let sealed = sealed.value().unwrap();
    assert_eq!(
        (sealed.action, sealed.fields, sealed.changed),
        ("encrypt", 2, true)
    );
    assert!(!sealed.body.contains("jq7f2k9x"));
    assert!(sealed
        .body
        .contains(r#""AmazonOrderId": "902-3159896-1390916""#));

    let opened = protect(
        &p,
        &ring,
        "orders",
        "request",
        Some("decrypt"),
        sealed.body.as_bytes(),
    );
    assert_eq!(opened.value().unwrap().body, BUYER, "byte for byte");

    let at = sealed.body.find("dpg1.k1.").unwrap() + 12;
    let mut changed = sealed.body.clone().into_bytes();
    changed[at] = if changed[at] == b'A' { b'B' } else { b'A' };
    let refused = protect(&p, &ring, "orders", "request", Some("decrypt"), &changed);
    let problem = refused.problem().unwrap();
    assert_eq!(problem.code, "envelope_authentication_failed");
    assert_eq!(problem.status, Some(502));
    assert!(problem
        .reply
        .as_deref()
        .unwrap()
        .contains("envelope_rejected"));
    assert!(problem
        .event
        .as_deref()
        .unwrap()
        .starts_with("dpp_event {\"event\":\"envelope_rejected\""));
}

fn sample(extra: serde_json::Value) -> String {
    let mut s = serde_json::json!({
        "method": "POST",
        "path": "/orders/v0/orders/902-3159896-1390916/buyerInfo?BuyerEmail=jq7f2k9x@marketplace.example.com",
        "request_headers": {"Content-Type": "application/json", "x-request-id": "0f8fad5b-d9cb-469f-a165-70867728950e", "x-seller": "jq7f2k9x@marketplace.example.com"},
        "body": BUYER,
        "client": "203.0.113.7:50412",
        "time_unix_ms": 1_767_225_600_000u64,
    });
    s.as_object_mut()
        .unwrap()
        .extend(extra.as_object().unwrap().clone());
    s.to_string()
}

fn run(sample: &str, keyring: Option<&Keyring>, log_key: Option<&str>) -> serde_json::Value {
    let out = simulate::run(&policy(), sample, keyring, log_key);
    assert!(out.is_ok(), "{:?}", out.problem());
    json(&out)
}

#[test]
fn a_sample_request_is_encrypted_and_logged_without_pii() {
    let ring = ring();
    let key = generate_log_key().unwrap();
    let ex = run(&sample(serde_json::json!({})), Some(&ring), Some(&key));
    assert_eq!(ex["matched_route"], "orders");
    assert_eq!(ex["outcome"], "forwarded");
    assert_eq!(ex["fields"], 2);
    let body = ex["body"].as_str().unwrap();
    assert!(body.contains("\"BuyerEmail\": \"dpg1.k1."));
    assert_eq!(
        ex["response_headers"][0],
        serde_json::json!(["cache-control", "no-store"])
    );
    assert_eq!(ex["events"], serde_json::json!([]));
    let record = ex["record"].as_str().unwrap();
    assert!(record.starts_with("{\"dpp_access\":1,\"worker\":\"playground\""));
    assert!(!record.contains("jq7f2k9x"), "{record}");
    assert!(record.contains("\"fields_encrypted\":2"));
    assert!(record.contains("\"mac\":"), "sealed with the log key");
    assert!(
        record.contains("\"x-seller\":"),
        "the header the policy logs, scrubbed"
    );
    assert_eq!(ex["sealed"], true);
    // The record verifies with the CLI's verifier (same chain).
    let chain_key = dpp_core::LogKey::parse(&key).unwrap().chain_key();
    assert!(dpp_core::access::chain::verify(record, &chain_key, true).is_ok());
}

#[test]
fn refusals_carry_the_filters_reply_and_event() {
    let ring = ring();
    // Kill switch.
    let ex = run(
        &sample(serde_json::json!({"path": "/off/1"})),
        Some(&ring),
        None,
    );
    assert_eq!(ex["outcome"], "refused");
    assert_eq!(ex["reply"]["status"], 503);
    assert_eq!(ex["reply"]["code"], "route_disabled");
    assert!(ex["events"][0]
        .as_str()
        .unwrap()
        .contains("\"request_id\":\"0f8fad5b-d9cb-469f-a165-70867728950e\""));
    assert!(ex["body"].is_null());
    // Plaintext downstream on a protected route.
    let ex = run(&sample(serde_json::json!({"tls": null})), Some(&ring), None);
    assert_eq!(ex["reply"]["status"], 403, "{ex}");
    // Not JSON, too large, no keyring.
    let ex = run(
        &sample(serde_json::json!({"request_headers": {"content-type": "text/plain"}})),
        Some(&ring),
        None,
    );
    assert_eq!(ex["reply"]["code"], "unsupported_content_type");
    let big = format!(r#"{{"payload":{{"BuyerEmail":"{}"}}}}"#, "x".repeat(5000));
    let ex = run(&sample(serde_json::json!({"body": big})), Some(&ring), None);
    assert_eq!(ex["reply"]["status"], 413);
    let ex = run(&sample(serde_json::json!({})), None, None);
    assert_eq!(ex["reply"]["code"], "encryption_failed");
    let record = ex["record"].as_str().unwrap();
    assert!(
        record.contains("\"refusals\":[\"encryption_failed\"]"),
        "{record}"
    );
    assert_eq!(ex["sealed"], false);
}

#[test]
fn a_chosen_route_runs_even_when_envoy_would_not_match_it_and_says_so() {
    let ring = ring();
    let ex = run(
        &sample(serde_json::json!({"path": "/elsewhere", "route": "orders"})),
        Some(&ring),
        None,
    );
    assert_eq!(ex["matched_route"], serde_json::Value::Null);
    assert_eq!(ex["route"], "orders");
    assert_eq!(ex["fields"], 2);
    assert!(ex["notes"][0]
        .as_str()
        .unwrap()
        .contains("matches no route"));
    // Without a route, an unmatched request passes untouched.
    let ex = run(
        &sample(serde_json::json!({"path": "/elsewhere"})),
        Some(&ring),
        None,
    );
    assert_eq!(ex["outcome"], "unprotected");
    assert_eq!(ex["body"], BUYER);
}

#[test]
fn a_response_sample_is_decrypted_with_the_routes_response_rules() {
    let (p, ring) = (policy(), ring());
    let sealed = protect(
        &p,
        &ring,
        "orders",
        "response",
        Some("encrypt"),
        BUYER.as_bytes(),
    );
    let body = sealed.value().unwrap().body.clone();
    let ex = run(
        &sample(serde_json::json!({
            "method": "GET", "direction": "response", "body": body,
            "response_headers": {"content-type": "application/json"}})),
        Some(&ring),
        None,
    );
    assert_eq!(ex["action"], "decrypt");
    assert_eq!(ex["body"], BUYER);
    assert!(ex["record"]
        .as_str()
        .unwrap()
        .contains("\"fields_decrypted\":2"));
}

#[test]
fn bad_samples_are_refused_with_a_reason() {
    let p = policy();
    for (s, code) in [
        ("{", "bad_sample"),
        (r#"{"path":"/","direction":"sideways"}"#, "bad_sample"),
        (r#"{"path":"/","route":"nope"}"#, "no_such_route"),
        (r#"{"path":"/","colour":"red"}"#, "bad_sample"),
    ] {
        let out = simulate::run(&p, s, None, None);
        assert_eq!(out.problem().unwrap().code, code, "{s}");
    }
    let out = simulate::run(&p, r#"{"path":"/"}"#, None, Some("short"));
    assert_eq!(out.problem().unwrap().code, "bad_log_key");
}

#[test]
fn path_tricks_get_the_filters_refusal_or_normal_form() {
    let ring = ring();
    // An encoded separator has no single meaning: refused before any route.
    let ex = run(
        &sample(serde_json::json!({"path": "/orders%2Fv0/orders/1"})),
        Some(&ring),
        None,
    );
    assert_eq!(ex["outcome"], "refused", "{ex}");
    assert_eq!(ex["reply"]["code"], "ambiguous_path");
    assert!(ex["events"][0]
        .as_str()
        .unwrap()
        .contains("\"event\":\"ambiguous_path\""));
    // A dot segment is refused by default; normalised on request, the
    // rewritten path reaches the protected route and gets its rules.
    let dotted = sample(serde_json::json!({"path": "/x/../orders/v0/orders/1"}));
    let ex = run(&dotted, Some(&ring), None);
    assert_eq!(ex["reply"]["code"], "ambiguous_path", "{ex}");
    let lenient = POLICY.replacen(
        "\"version\": 1,",
        "\"version\": 1, \"requests\": {\"non_normal_path\": \"normalize\"},",
        1,
    );
    let p = Policy::from_json(lenient.as_bytes()).unwrap();
    let ex = json(&simulate::run(&p, &dotted, Some(&ring), None));
    assert_eq!(ex["matched_route"], "orders", "{ex}");
    assert_eq!(ex["fields"], 2);
    assert_eq!(
        ex["request_headers_set"],
        serde_json::json!([[":path", "/orders/v0/orders/1"]])
    );
    // Under `requests.unmatched: deny` an unmatched request is refused.
    let strict = POLICY.replacen(
        "\"version\": 1,",
        "\"version\": 1, \"requests\": {\"unmatched\": \"deny\"},",
        1,
    );
    let p = Policy::from_json(strict.as_bytes()).unwrap();
    let out = simulate::run(
        &p,
        &sample(serde_json::json!({"path": "/else"})),
        Some(&ring),
        None,
    );
    let ex = json(&out);
    assert_eq!(ex["reply"]["status"], 404, "{ex}");
    // Chosen anyway, the route runs and the note says what Envoy does.
    let out = simulate::run(
        &p,
        &sample(serde_json::json!({"path": "/else", "route": "orders"})),
        Some(&ring),
        None,
    );
    let ex = json(&out);
    assert_eq!(ex["fields"], 2);
    assert!(ex["notes"][0]
        .as_str()
        .unwrap()
        .starts_with("in Envoy this request is refused (404 no_route)"));
}
