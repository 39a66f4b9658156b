use super::*;
use crate::policy::Policy;

const LOG_KEY: &str = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";

fn key() -> LogKey {
    LogKey::parse(LOG_KEY).unwrap()
}

fn canaries(values: &[&str]) -> Canaries {
    let k = key().canary_key();
    let list: Vec<serde_json::Value> = values
        .iter()
        .enumerate()
        .map(|(i, v)| {
            serde_json::json!({"digest": k.digest_hex(v.as_bytes()), "label": format!("c{i}")})
        })
        .collect();
    let doc = serde_json::json!({"version": 1, "monitoring": {"canaries": list}});
    let policy = Policy::from_json(doc.to_string().as_bytes()).unwrap();
    Canaries::new(&policy, &key()).unwrap()
}

fn found(c: &Canaries, target: &str) -> Vec<usize> {
    let mut hits = Vec::new();
    c.in_target(target, &mut hits);
    hits
}

#[test]
fn the_digest_is_an_hmac_under_a_purpose_bound_subkey() {
    // Pinned: the CLI, the docs and every policy in the field depend on it.
    let d = key().canary_key().digest_hex(b"ORD-CANARY-1");
    assert_eq!(d.len(), 64);
    assert_ne!(
        d,
        key().pseudonymizer().pseudonym("ORD-CANARY-1"),
        "not the pseudonym"
    );
    let other = LogKey::parse(&"11".repeat(32)).unwrap();
    assert_ne!(d, other.canary_key().digest_hex(b"ORD-CANARY-1"));
}

#[test]
fn path_segments_and_query_values_are_found_in_every_spelling() {
    let c = canaries(&["ORD-CANARY-1", "jane canary@example.com"]);
    for target in [
        "/orders/ORD-CANARY-1",
        "/orders/ORD-CANARY-1/items",
        "/orders/ORD%2DCANARY%2D1",
        "/orders/ORD%252DCANARY-1",
        "/orders/ORD-CANARY-1;v=2",
        "/orders?id=ORD-CANARY-1",
        "/orders?x=1&id=ORD-CANARY-1#frag",
        "/orders?ORD-CANARY-1",
    ] {
        assert_eq!(found(&c, target), [0], "{target}");
    }
    for target in [
        "/search?q=jane+canary%40example.com",
        "/search?q=jane%20canary@example.com",
    ] {
        assert_eq!(found(&c, target), [1], "{target}");
    }
    // Exact match: other values, substrings, other case are not the canary.
    for target in [
        "/orders/ORD-CANARY-10",
        "/orders/ord-canary-1",
        "/orders/xORD-CANARY-1",
        "/orders?id=ORD-CANARY-1x",
        "/ORD-CANARY",
    ] {
        assert!(found(&c, target).is_empty(), "{target}");
    }
    assert_eq!(
        found(&c, "/o/ORD-CANARY-1/ORD-CANARY-1?a=ORD-CANARY-1"),
        [0]
    );
}

#[test]
fn json_values_compare_unescaped_strings_and_raw_scalars() {
    let c = canaries(&["ORD-CANARY-1", "4242"]);
    assert_eq!(c.in_json_value(br#""ORD-CANARY-1""#), Some(0));
    assert_eq!(c.in_json_value(br#""ORD\u002dCANARY-1""#), Some(0));
    assert_eq!(c.in_json_value(b"4242"), Some(1));
    assert_eq!(c.in_json_value(br#""4242""#), Some(1));
    assert_eq!(c.in_json_value(br#"{"id":"ORD-CANARY-1"}"#), None);
    assert_eq!(c.in_json_value(b""), None);
}

#[test]
fn canary_policy_errors_name_the_field_and_never_take_clear_values() {
    let bad = |canary: serde_json::Value| {
        let doc = serde_json::json!({"version": 1, "monitoring": {"canaries": [canary]}});
        Policy::from_json(doc.to_string().as_bytes()).unwrap_err()
    };
    let e = bad(serde_json::json!({"digest": "ORD-CANARY-1", "label": "x"}));
    assert_eq!(e.field, "monitoring.canaries[0].digest");
    let e = bad(serde_json::json!({"digest": "ab".repeat(32), "label": "a b"}));
    assert_eq!(e.field, "monitoring.canaries[0].label");
    let e = bad(serde_json::json!({"digest": "ab".repeat(32), "label": "x", "value": "y"}));
    assert!(e.field.starts_with("monitoring.canaries[0]"), "{e}");
}

#[test]
fn monitoring_without_the_log_key_is_refused() {
    let p = |doc: serde_json::Value| Policy::from_json(doc.to_string().as_bytes()).unwrap();
    let with_canary = p(serde_json::json!({"version": 1,
        "monitoring": {"canaries": [{"digest": "ab".repeat(32), "label": "x"}]}}));
    assert_eq!(
        require_log_key(&with_canary, false).unwrap_err().field,
        "monitoring.canaries"
    );
    assert!(require_log_key(&with_canary, true).is_ok());
    let with_limits = p(serde_json::json!({"version": 1, "routes": [
        {"name": "a", "limits": {"requests": {"max": 1, "window_seconds": 60}}}]}));
    assert_eq!(
        require_log_key(&with_limits, false).unwrap_err().field,
        "routes[0].limits"
    );
    assert!(require_log_key(&p(serde_json::json!({"version": 1})), false).is_ok());
}

#[test]
fn counter_keys_hold_pseudonyms_and_retry_after_rounds_up() {
    let k = counter_key(Counter::Requests, Some("orders"), "p:abc");
    assert_eq!(k, "dpp_guard.mon.req.orders.p:abc");
    assert_eq!(retry_after_seconds(0, 1), 1);
    assert_eq!(retry_after_seconds(0, 1_500_000_000), 2);
    assert_eq!(retry_after_seconds(10, 5), 1);
}

#[test]
fn the_record_path_keeps_everything_but_the_canary() {
    let c = canaries(&["ORD-CANARY-1"]);
    assert_eq!(
        c.redact_target("/orders/ORD-CANARY-1/items?x=1&id=ORD%2DCANARY-1&ORD-CANARY-1#f"),
        "/orders/[canary]/items?x=1&id=[canary]&[canary]#"
    );
    assert_eq!(
        c.redact_target("/orders/ORD-CANARY-1;v=2"),
        "/orders/[canary]"
    );
    assert_eq!(c.redact_target("/orders/1?a=b"), "/orders/1?a=b");
}
