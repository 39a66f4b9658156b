use super::chain::{verify, LogChain};
use super::*;
use crate::logkey::LogKey;
use crate::scrub::PiiKeys;

fn key() -> LogKey {
    LogKey::parse(&"17".repeat(32)).unwrap()
}

fn scrubber() -> Scrubber {
    Scrubber::new(Some(key().pseudonymizer()), PiiKeys::default())
}

fn facts(path: &str) -> RequestLogFacts {
    RequestLogFacts {
        time_unix_nanos: 1_795_910_400_000_000_000,
        request_id: Some("0f8fad5b-d9cb-469f-a165-70867728950e".into()),
        method: "GET".into(),
        path: path.into(),
        status: Some(200),
        code_details: Some("via_upstream".into()),
        route_name: Some("orders".into()),
        policy_route: Some("orders-pii".into()),
        upstream_cluster: Some("sp_api".into()),
        duration_nanos: Some(1_234_567),
        request_bytes: Some(100),
        response_bytes: Some(2000),
        tls: TlsFacts {
            downstream: Some("TLSv1.3".into()),
            downstream_mtls: true,
            upstream: Some("TLSv1.3".into()),
        },
        client_address: Some("203.0.113.7:50000".into()),
        principal: Some("CN=jane.doe@example.com,O=Seller".into()),
        headers: vec![
            ("user-agent".into(), "curl/8.0 (Jane's laptop)".into()),
            ("cookie".into(), "session=abc123secret".into()),
            ("x-amz-access-token".into(), "Atza|IwEBIsecret".into()),
        ],
    }
}

#[test]
fn record_holds_facts_but_no_pii() {
    let mut actions = Actions {
        fields_encrypted: 3,
        ..Actions::default()
    };
    actions.refused("route_disabled");
    actions.raised(EventKind::KillSwitchRefusal);
    let rec = AccessRecord::build(
        &facts("/orders/v0/orders?BuyerEmail=jane%40example.com&Phone=5551234567"),
        &actions,
        &scrubber(),
    );
    let mut chain = LogChain::new("w1".into(), Some(key().chain_key()));
    let line = chain.seal(rec);
    for pii in [
        "jane",
        "5551234567",
        "203.0.113.7",
        "abc123secret",
        "Atza",
        "curl",
        "laptop",
    ] {
        assert!(
            !line.to_lowercase().contains(&pii.to_lowercase()),
            "{pii} in {line}"
        );
    }
    let v: serde_json::Value = serde_json::from_str(&line).unwrap();
    assert_eq!(v["method"], "GET");
    assert_eq!(v["status"], 200);
    assert_eq!(v["duration_us"], 1234);
    assert_eq!(v["route"], "orders");
    assert_eq!(v["upstream_cluster"], "sp_api");
    assert_eq!(v["tls"]["upstream"], "TLSv1.3");
    assert_eq!(v["actions"]["fields_encrypted"], 3);
    assert_eq!(v["actions"]["refusals"][0], "route_disabled");
    assert_eq!(v["actions"]["events"][0], "kill_switch_refusal");
    assert_eq!(v["headers"]["cookie"], "session=[redacted]");
    assert!(v["headers"].get("x-amz-access-token").is_none());
    assert!(v["client"].as_str().unwrap().starts_with("p:"));
    assert!(v["principal"].as_str().unwrap().starts_with("p:"));
    assert_eq!(v["time"], "2026-11-29T00:00:00.000Z");
    assert!(line.starts_with(chain::RECORD_MARKER));
    assert!(v["path"]
        .as_str()
        .unwrap()
        .starts_with("/orders/v0/orders?BuyerEmail=p:"));
}

#[test]
fn same_email_same_pseudonym_across_requests_and_places() {
    let s = scrubber();
    let a = AccessRecord::build(
        &facts("/x?BuyerEmail=Jane%40Example.com"),
        &Actions::default(),
        &s,
    );
    let b = AccessRecord::build(&facts("/buyers/jane@example.com"), &Actions::default(), &s);
    let ta = a.path.rsplit('=').next().unwrap();
    let tb = b.path.rsplit('/').next().unwrap();
    assert_eq!(ta, tb);
}

fn sealed_log(n: usize) -> Vec<String> {
    let s = scrubber();
    let mut w1 = LogChain::new("w1".into(), Some(key().chain_key()));
    let mut w2 = LogChain::new("w2".into(), Some(key().chain_key()));
    (0..n)
        .map(|i| {
            let chain = if i % 3 == 2 { &mut w2 } else { &mut w1 };
            let rec = AccessRecord::build(&facts(&format!("/r/{i}")), &Actions::default(), &s);
            // Mixed carriers: Envoy text access log, plugin log line.
            if i % 2 == 0 {
                chain.seal(rec)
            } else {
                format!(
                    "[2026-11-29 00:00:00.000][12][info][wasm] wasm log dpp_guard: dpp_access {}",
                    chain.seal(rec)
                )
            }
        })
        .collect()
}

fn verify_lines(lines: &[String]) -> Result<chain::Verified, chain::Broken> {
    let mut text = String::from("unrelated envoy line\n");
    text.push_str(&lines.join("\n"));
    verify(&text, &key().chain_key(), true)
}

#[test]
fn untouched_log_verifies() {
    let v = verify_lines(&sealed_log(9)).unwrap();
    assert_eq!(v.records, 9);
    assert_eq!(v.chains["w1"], (0, 5));
    assert_eq!(v.chains["w2"], (0, 2));
}

#[test]
fn modified_record_is_named() {
    let mut log = sealed_log(9);
    log[4] = log[4].replace("\"status\":200", "\"status\":201");
    let b = verify_lines(&log).unwrap_err();
    assert_eq!(b.line, 6, "{b}");
    assert!(b.problem.contains("modified"), "{b}");
}

#[test]
fn deleted_record_is_named() {
    let mut log = sealed_log(9);
    log.remove(3); // w1 seq 2
    let b = verify_lines(&log).unwrap_err();
    assert_eq!((b.worker.as_str(), b.seq, b.line), ("w1", 3, 5), "{b}");
    assert!(b.problem.contains("deleted"), "{b}");
}

#[test]
fn reordered_records_are_named() {
    let mut log = sealed_log(9);
    log.swap(3, 4); // w1 seq 2 and 3
    let b = verify_lines(&log).unwrap_err();
    assert_eq!((b.worker.as_str(), b.seq, b.line), ("w1", 3, 5), "{b}");
    assert!(b.problem.contains("reordered"), "{b}");
}

#[test]
fn replaced_record_from_another_position_is_caught() {
    // A valid record of the same worker at the right seq but from another
    // log (different prev) cannot be spliced in.
    let log = sealed_log(9);
    let mut other = sealed_log(9);
    other[3] = log[3].clone();
    other[1] = other[1].replace("/r/1", "/r/x");
    assert!(verify_lines(&other).is_err());
}

#[test]
fn wrong_key_fails_and_head_truncation_is_seen_with_from_start() {
    let log = sealed_log(6);
    let other = LogKey::parse(&"18".repeat(32)).unwrap().chain_key();
    assert!(verify(&log.join("\n"), &other, false).is_err());
    let tail = log[2..].join("\n");
    assert!(verify(&tail, &key().chain_key(), false).is_ok());
    let b = verify(&tail, &key().chain_key(), true).unwrap_err();
    assert!(b.problem.contains("starts at seq"), "{b}");
}

#[test]
fn json_format_access_log_is_read() {
    let log = sealed_log(3);
    let wrapped: Vec<String> = log
        .iter()
        .map(|l| {
            let rec = l.find(chain::RECORD_MARKER).map(|i| &l[i..]).unwrap();
            serde_json::json!({"start_time": "x", "dpp": rec}).to_string()
        })
        .collect();
    assert_eq!(
        verify(&wrapped.join("\n"), &key().chain_key(), true)
            .unwrap()
            .records,
        3
    );
}

#[test]
fn a_json_wrapped_plugin_log_line_is_verified_not_skipped() {
    // Found by fuzzing (fuzz target `chain`): a plugin log line
    // (`... dpp_access {...}`) that a JSON logger wrapped as its message was
    // skipped, so a worker whose records all came that way was not checked
    // at all and a record deleted from it went unnoticed.
    let wrap = |l: &String| {
        let rec = l.find(chain::RECORD_MARKER).map(|i| &l[i..]).unwrap();
        let msg = format!(
            "[2026-11-29 00:00:00.000][12][info][wasm] wasm log dpp_guard: dpp_access {rec}"
        );
        serde_json::json!({"level": "info", "msg": msg}).to_string()
    };
    let log: Vec<String> = sealed_log(9).iter().map(wrap).collect();
    assert!(log
        .iter()
        .all(|l| l.contains("wasm log dpp_guard: dpp_access {\\\"dpp_access")));
    assert_eq!(verify_lines(&log).unwrap().records, 9);
    let mut gap = log.clone();
    gap.remove(3); // w1 seq 2
    let b = verify_lines(&gap).unwrap_err();
    assert_eq!((b.worker.as_str(), b.seq), ("w1", 3), "{b}");
    assert!(b.problem.contains("deleted"), "{b}");
}

#[test]
fn unsealed_records_do_not_verify() {
    let mut chain = LogChain::new("w".into(), None);
    let line = chain.seal(AccessRecord::build(
        &facts("/"),
        &Actions::default(),
        &scrubber(),
    ));
    assert!(!line.contains("\"mac\""));
    let b = verify(&line, &key().chain_key(), false).unwrap_err();
    assert!(b.problem.contains("not sealed"), "{b}");
}

#[test]
fn a_record_on_two_channels_counts_once() {
    let log = sealed_log(4);
    let doubled: Vec<String> = log
        .iter()
        .flat_map(|l| [l.clone(), format!("wasm log: dpp_access {l}")])
        .collect();
    assert_eq!(verify_lines(&doubled).unwrap().records, 4);
}

/// Appends members after a sealed record's MAC, inside its object.
fn append_after_mac(line: &str, members: &str) -> String {
    let cut = line.rfind('}').unwrap();
    format!("{}{members}}}", &line[..cut])
}

#[test]
fn relabelling_records_after_the_mac_cannot_hide_a_deletion() {
    // The forgery: delete w1 seq 2, then re-label w1's later records as
    // another worker's chain by members appended after "mac" (outside the
    // MAC, but the last duplicate wins in a JSON parse), numbered from 0 so
    // that even --from-start sees complete chains.
    let mut log = sealed_log(9);
    // w1 holds lines 0,1,3,4,6,7 (seq 0..=5); w2 lines 2,5,8.
    log.remove(3);
    let mut next = 0;
    for line in log.iter_mut().skip(3) {
        if line.contains("\"worker\":\"w1\"") {
            *line = append_after_mac(line, &format!(",\"worker\":\"w9\",\"seq\":{next}"));
            next += 1;
        }
    }
    for from_start in [false, true] {
        let mut text = String::from("unrelated envoy line\n");
        text.push_str(&log.join("\n"));
        let b = verify(&text, &key().chain_key(), from_start).unwrap_err();
        // The first re-labelled record (w1 seq 3, now on line 5) is named
        // by what its MAC covers, not by the appended members.
        assert_eq!((b.line, b.worker.as_str(), b.seq), (5, "w1", 3), "{b}");
        assert!(b.problem.contains("follow the mac"), "{b}");
    }
}

#[test]
fn a_field_appended_after_the_mac_is_refused() {
    let mut log = sealed_log(9);
    log[4] = append_after_mac(&log[4], ",\"status\":500");
    let b = verify_lines(&log).unwrap_err();
    assert_eq!((b.line, b.worker.as_str(), b.seq), (6, "w1", 3), "{b}");
    assert!(b.problem.contains("follow the mac"), "{b}");
    // The same with a second mac member at the end, copied from the first.
    let mut log = sealed_log(9);
    let mac = log[4]
        .rsplit("\"mac\":\"")
        .next()
        .unwrap()
        .trim_end_matches("\"}")
        .to_string();
    log[4] = append_after_mac(&log[4], &format!(",\"status\":500,\"mac\":\"{mac}\""));
    let b = verify_lines(&log).unwrap_err();
    assert_eq!(b.line, 6, "{b}");
}

#[test]
fn a_record_with_a_duplicate_member_is_refused_even_under_a_valid_mac() {
    // Only the key holder can make one; the rule still holds, because the
    // reader of the log and verify-log must agree on every field.
    let k = key().chain_key();
    let prev = crate::logkey::ChainMac::default();
    let body = format!(
        "{{\"dpp_access\":1,\"worker\":\"w\",\"seq\":0,\"status\":200,\"status\":500,\"prev\":\"{}\"",
        prev.to_text()
    );
    let mac = k.link(&prev, body.as_bytes());
    let line = format!("{body},\"mac\":\"{}\"}}", mac.to_text());
    let b = verify(&line, &k, true).unwrap_err();
    assert!(b.problem.contains("appears twice"), "{b}");
    assert_eq!((b.worker.as_str(), b.seq), ("w", 0));
}

#[test]
fn a_chain_cannot_restart_at_seq_0_in_the_middle() {
    // A record of seq 0 must carry the initial prev: a later record cannot
    // pose as the start of a chain.
    let k = key().chain_key();
    let prev = k.link(&crate::logkey::ChainMac::default(), b"earlier");
    let body = format!(
        "{{\"dpp_access\":1,\"worker\":\"w\",\"seq\":0,\"prev\":\"{}\"",
        prev.to_text()
    );
    let mac = k.link(&prev, body.as_bytes());
    let line = format!("{body},\"mac\":\"{}\"}}", mac.to_text());
    let b = verify(&line, &k, false).unwrap_err();
    assert!(b.problem.contains("does not start a chain"), "{b}");
}

mod properties {
    use proptest::prelude::*;

    use super::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(128))]

        /// Changing any one character of a sealed log never yields a log
        /// that verifies with all its records: either a link breaks, or
        /// (a record's marker destroyed, at a chain's end) a record is lost,
        /// which the record count shows.
        #[test]
        fn any_single_change_is_detected(line in 0usize..9, pos in any::<prop::sample::Index>(), c in "[ -~]") {
            let mut log = sealed_log(9);
            let target = &log[line];
            let start = target.find(chain::RECORD_MARKER).unwrap();
            let i = start + pos.index(target.len() - start);
            let c = c.chars().next().unwrap();
            prop_assume!(!target[i..].starts_with(c));
            let mut changed = target[..i].to_string();
            changed.push(c);
            changed.push_str(&target[i + 1..]);
            log[line] = changed;
            match verify_lines(&log) {
                Err(_) => {}
                Ok(v) => prop_assert!(v.records < 9, "a modified log verified whole"),
            }
        }

        #[test]
        fn verify_never_panics_on_garbage(text in any::<String>()) {
            let _ = verify(&text, &key().chain_key(), false);
            let _ = verify(&format!("{}{text}", chain::RECORD_MARKER), &key().chain_key(), true);
        }

        /// One e-mail, any claimed spelling, anywhere in the request: one pseudonym.
        #[test]
        fn pseudonym_is_stable_across_spellings(local in "[a-z][a-z0-9.]{0,10}[a-z0-9]", domain in "[a-z]{2,10}\\.(com|de|org)", upper in any::<bool>()) {
            let email = format!("{local}@{domain}");
            let s = scrubber();
            let expected = s.text(&email);
            let spelled = if upper { email.to_uppercase() } else { email.clone() };
            let enc = crate::scrub::encoding::percent_encode(&spelled);
            let twice = crate::scrub::encoding::percent_encode(&enc);
            for path in [format!("/b/{spelled}"), format!("/b/{enc}"), format!("/b/{twice}")] {
                let out = AccessRecord::build(&facts(&path), &Actions::default(), &s).path;
                prop_assert_eq!(out, format!("/b/{expected}"));
            }
            for q in [format!("/q?BuyerEmail={enc}"), format!("/q?x={twice}")] {
                let out = AccessRecord::build(&facts(&q), &Actions::default(), &s).path;
                prop_assert!(out.ends_with(&format!("={expected}")), "{}", out);
            }
            let HeaderOutcome::Value(h) = s.header("x-buyer-email", &spelled) else { panic!() };
            prop_assert_eq!(h, expected);
        }
    }
}
