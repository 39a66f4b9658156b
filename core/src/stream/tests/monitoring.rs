//! Report-only mode, canaries and the per-client alarms, driven through
//! the exchange like the host drives it.

use super::*;
use crate::logkey::LogKey;
use crate::monitor::Canaries;
use crate::stream::shared::MemoryStore;

const LOG_KEY: &str = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";
const CANARY: &str = "ORD-CANARY-7";
const T0: u64 = 1_767_225_600_000_000_000;
const SEC: u64 = 1_000_000_000;

fn log_key() -> LogKey {
    LogKey::parse(LOG_KEY).unwrap()
}

/// A guard as the plugin builds it: log key, scrubber with pseudonyms,
/// canaries.
fn monitored(policy: Value) -> Rc<Guard> {
    let policy = Policy::from_json(policy.to_string().as_bytes()).expect("valid policy");
    let keyring = policy.keys.as_ref().map(|_| Keyring::parse(KEYS).unwrap());
    let key = log_key();
    let scrubber = policy
        .logging
        .scrubber(Some(&key), policy.selector_leaf_names());
    let canaries = Canaries::new(&policy, &key);
    Rc::new(Guard::new(policy, keyring, scrubber).with_canaries(canaries))
}

fn canary_digest(value: &str) -> String {
    log_key().canary_key().digest_hex(value.as_bytes())
}

fn client(addr: &str) -> Props {
    Props::default().with(Property::SourceAddress, addr)
}

fn at(mut props: Props, now: u64) -> Props {
    props.now = Some(now);
    props
}

/// Requests every control of the base policy refuses, with the event each raises.
fn bad_requests() -> Vec<(Headers, Option<&'static [u8]>, EventKind)> {
    vec![
        (
            request("GET", "/mws/orders", &[]),
            None,
            EventKind::KillSwitchRefusal,
        ),
        (
            request("GET", "/orders/%2e%2e/admin", &[]),
            None,
            EventKind::AmbiguousPath,
        ),
        (
            request("POST", "/seal/1", &[("content-type", "text/plain")]),
            Some(b"hello"),
            EventKind::UnsupportedContentType,
        ),
        (
            json_post("/seal/1"),
            Some(b"{not json"),
            EventKind::MalformedBody,
        ),
        (
            json_post("/seal/1"),
            Some(br#"{"email":"a@example.com","pad":"0123456789012345678901234567890123456789"}"#),
            EventKind::BodyTooLarge,
        ),
        (
            request("GET", "/nowhere", &[]),
            None,
            EventKind::UnmatchedRequest,
        ),
    ]
}

/// Runs one request (headers, then its body if any) and returns every
/// effect in order.
fn run(g: &Rc<Guard>, mut h: Headers, body: Option<&[u8]>) -> (Exchange, Vec<Effects>) {
    let mut x = g.open();
    let mut out = vec![x.on_request_headers(
        &mut h,
        &mut Props::default().with(Property::DownstreamTlsVersion, "TLSv1.3"),
        &mut MemoryStore::default(),
        body.is_none(),
    )];
    if let Some(b) = body {
        out.push(x.on_request_body(b.len(), true, &mut Body::of(b)));
    }
    (x, out)
}

fn events(fx: &[Effects]) -> Vec<&crate::events::SecurityEvent> {
    fx.iter().flat_map(|f| f.events.iter()).collect()
}

fn strict_base() -> Value {
    with(
        with(base(), "requests", json!({"unmatched": "deny"})),
        "transport",
        json!({}),
    )
}

#[test]
fn the_same_bad_requests_raise_the_same_events_in_both_modes_and_pass_only_in_report() {
    // TLS present, so the downstream check passes; every other control fires.
    let enforce = monitored(strict_base());
    let report = monitored(with(strict_base(), "mode", json!("report")));
    for ((h, body, kind), (h2, _, _)) in bad_requests().into_iter().zip(bad_requests()) {
        let (xe, fe) = run(&enforce, h, body);
        let (xr, fr) = run(&report, h2, body);
        let ee = events(&fe);
        let er = events(&fr);
        assert_eq!(
            ee.iter().map(|e| e.event).collect::<Vec<_>>(),
            [kind],
            "enforce {kind:?}"
        );
        assert_eq!(
            er.iter().map(|e| e.event).collect::<Vec<_>>(),
            [kind],
            "report {kind:?}"
        );
        assert!(!ee[0].report_only && er[0].report_only);
        // Same event otherwise.
        let mut flagged = ee[0].clone();
        flagged.report_only = true;
        assert_eq!(&flagged, er[0]);
        // Enforce: a local reply, held. Report: no reply, nothing held back
        // at the end, the body as it came.
        assert!(xe.refused());
        assert!(fe.iter().any(|f| f.reply.is_some()));
        assert!(!xr.refused());
        assert!(fr.iter().all(|f| f.reply.is_none() && f.body.is_none()));
        assert_eq!(fr.last().unwrap().flow, Flow::Continue, "{kind:?}");
        // Metrics by mode.
        let counters: Vec<&str> = fr.iter().flat_map(|f| f.counters.clone()).collect();
        assert!(counters.contains(&kind.metric_name()));
        assert!(counters.contains(&kind.report_only_metric_name()));
        let counters: Vec<&str> = fe.iter().flat_map(|f| f.counters.clone()).collect();
        assert!(!counters.contains(&kind.report_only_metric_name()));
        // The record says what would have been sent.
        assert!(xr.actions().refusals.is_empty());
        assert_eq!(xr.actions().report_only.len(), 1);
        let line = er[0].to_log_line();
        assert!(line.contains(r#""report_only":true"#), "{line}");
        assert!(!ee[0].to_log_line().contains("report_only"));
    }
}

#[test]
fn a_plaintext_client_passes_a_report_route_with_the_event_flagged() {
    let g = monitored(with(
        strict_base(),
        "routes",
        json!([{"name": "orders", "match": {"path": {"prefix": "/orders/"}}, "mode": "report"}]),
    ));
    let mut x = g.open();
    let fx = x.on_request_headers(
        &mut request("GET", "/orders/1", &[]),
        &mut Props::default(),
        &mut MemoryStore::default(),
        true,
    );
    assert!(fx.reply.is_none() && fx.flow == Flow::Continue);
    assert_eq!(event_kinds(&fx), [EventKind::DownstreamPlaintextRefused]);
    assert!(fx.events[0].report_only);
}

#[test]
fn a_route_mode_overrides_the_policy_mode_both_ways() {
    let mut policy = with(base(), "mode", json!("report"));
    policy["routes"][0]["mode"] = json!("enforce"); // legacy-mws, kill switch
    let g = monitored(policy);
    let (x, fx) = run(&g, request("GET", "/mws/a", &[]), None);
    assert!(x.refused() && fx[0].reply.is_some());
    let mut policy = base();
    policy["routes"][0]["mode"] = json!("report");
    let g = monitored(policy);
    let (x, fx) = run(&g, request("GET", "/mws/a", &[]), None);
    assert!(!x.refused() && fx[0].reply.is_none());
    assert!(fx[0].events[0].report_only);
}

#[test]
fn a_check_that_cannot_run_is_refused_in_report_mode_too() {
    let g = monitored(with(base(), "mode", json!("report")));
    let mut x = g.open();
    let fx = x.on_request_headers(
        &mut Headers::gone(),
        &mut Props::default(),
        &mut MemoryStore::default(),
        false,
    );
    assert_eq!(reply_of(&fx), (500, "check_unavailable"));
    assert!(!fx.events[0].report_only);
    let mut x = g.open();
    let fx = x.on_request_headers(
        &mut json_post("/seal/1"),
        &mut Props::default(),
        &mut MemoryStore::default(),
        false,
    );
    let fx2 = x.on_request_body(3, true, &mut Body::unreadable());
    assert!(fx.reply.is_none());
    assert_eq!(reply_of(&fx2), (500, "check_unavailable"));
}

#[test]
fn report_mode_still_encrypts_what_it_can() {
    let g = monitored(with(base(), "mode", json!("report")));
    let body = br#"{"email":"jane@example.com"}"#;
    let (_, fx) = run(&g, json_post("/seal/1"), Some(body));
    let sealed = replaced(&fx[1]);
    assert_ne!(sealed["email"], "jane@example.com");
}

// ---- canaries -----------------------------------------------------------------

fn with_canary(policy: Value, block: bool) -> Value {
    with(
        policy,
        "monitoring",
        json!({"canaries": [{"digest": canary_digest(CANARY), "label": "order-7", "block": block}]}),
    )
}

#[test]
fn a_canary_in_the_path_raises_one_critical_event_without_its_value() {
    for target in [
        format!("/orders/{CANARY}"),
        format!("/orders/x?id=ORD%2DCANARY-7&again={CANARY}"),
        format!("/catalog?order={CANARY}"),
    ] {
        let g = monitored(with_canary(base(), false));
        let mut x = g.open();
        let fx = x.on_request_headers(
            &mut request("GET", &target, &[]),
            &mut client("203.0.113.9:5555"),
            &mut MemoryStore::default(),
            true,
        );
        assert_eq!(event_kinds(&fx), [EventKind::CanaryAccessed], "{target}");
        assert!(fx.reply.is_none(), "not blocking");
        let e = &fx.events[0];
        assert_eq!(e.severity, crate::events::Severity::Critical);
        assert_eq!(e.detail.as_deref(), Some("request: order-7"));
        let who = e.subject.as_deref().unwrap();
        assert!(who.starts_with("p:"), "{who}");
        assert!(fx.counters.contains(&"dpp_guard.events.canary_accessed"));
        let line = e.to_log_line();
        assert!(
            !line.contains("CANARY") && !line.contains("203.0.113.9"),
            "{line}"
        );
    }
}

#[test]
fn a_blocking_canary_refuses_requests_403_and_responses_502() {
    let policy = with_canary(base(), true);
    let g = monitored(policy.clone());
    let (x, fx) = run(&g, request("GET", &format!("/orders/{CANARY}"), &[]), None);
    assert_eq!(reply_of(&fx[0]), (403, "canary_record"));
    assert!(x.refused());
    assert_eq!(fx[0].events[0].route.as_deref(), Some("orders"));

    // In a decrypted response field: sealed by one route, opened by another.
    let mut x = g.open();
    x.on_request_headers(
        &mut request("GET", "/reply-seal/1", &[]),
        &mut Props::default(),
        &mut MemoryStore::default(),
        true,
    );
    x.on_response_headers(
        &mut response(&[("content-type", "application/json")]),
        &mut Props::default(),
        &mut MemoryStore::default(),
        false,
    );
    let plain = format!(r#"{{"email":"{CANARY}"}}"#);
    let fx = x.on_response_body(plain.len(), true, &mut Body::of(plain.as_bytes()));
    // Sealing a canary is reported (and blocked) too: the plaintext went by.
    assert_eq!(reply_of(&fx), (502, "canary_record"));
    let g2 = monitored(with_canary(base(), false));
    let mut x = g2.open();
    x.on_request_headers(
        &mut request("GET", "/reply-seal/1", &[]),
        &mut Props::default(),
        &mut MemoryStore::default(),
        true,
    );
    x.on_response_headers(
        &mut response(&[("content-type", "application/json")]),
        &mut Props::default(),
        &mut MemoryStore::default(),
        false,
    );
    let sealed = x.on_response_body(plain.len(), true, &mut Body::of(plain.as_bytes()));
    assert_eq!(event_kinds(&sealed), [EventKind::CanaryAccessed]);
    let sealed = sealed.body.expect("sealed").bytes;

    let mut x = g.open();
    x.on_request_headers(
        &mut request("GET", "/open/1", &[]),
        &mut Props::default(),
        &mut MemoryStore::default(),
        true,
    );
    x.on_response_headers(
        &mut response(&[("content-type", "application/json")]),
        &mut Props::default(),
        &mut MemoryStore::default(),
        false,
    );
    let fx = x.on_response_body(sealed.len(), true, &mut Body::of(&sealed));
    assert_eq!(reply_of(&fx), (502, "canary_record"));
    assert_eq!(fx.events[0].detail.as_deref(), Some("response: order-7"));

    // Report mode: the same event, flagged, and the response passes opened.
    let g = monitored(with(policy, "mode", json!("report")));
    let mut x = g.open();
    x.on_request_headers(
        &mut request("GET", "/open/1", &[]),
        &mut Props::default(),
        &mut MemoryStore::default(),
        true,
    );
    x.on_response_headers(
        &mut response(&[("content-type", "application/json")]),
        &mut Props::default(),
        &mut MemoryStore::default(),
        false,
    );
    let fx = x.on_response_body(sealed.len(), true, &mut Body::of(&sealed));
    assert!(fx.reply.is_none());
    assert!(fx.events[0].report_only);
    assert_eq!(replaced(&fx)["email"], CANARY);
}

#[test]
fn a_canary_in_the_path_and_the_body_of_one_exchange_is_one_event() {
    let g = monitored(with_canary(base(), false));
    let mut x = g.open();
    let fx = x.on_request_headers(
        &mut json_post(&format!("/seal/{CANARY}")),
        &mut Props::default(),
        &mut MemoryStore::default(),
        false,
    );
    assert_eq!(event_kinds(&fx), [EventKind::CanaryAccessed]);
    let body = format!(r#"{{"email":"{CANARY}"}}"#);
    let fx = x.on_request_body(body.len(), true, &mut Body::of(body.as_bytes()));
    assert!(fx.events.is_empty(), "{:?}", fx.events);
    assert!(fx.body.is_some(), "sealed as usual");
}

#[test]
fn near_misses_are_not_canaries() {
    let g = monitored(with_canary(base(), true));
    for target in [
        "/orders/ord-canary-7",
        "/orders/ORD-CANARY-70",
        "/orders/ORD-CANARY-",
        "/orders?x=ORD-CANARY-7x",
    ] {
        let (_, fx) = run(&g, request("GET", target, &[]), None);
        assert!(fx[0].events.is_empty() && fx[0].reply.is_none(), "{target}");
    }
}

// ---- rate, volume, bursts ------------------------------------------------------

fn limited(limits: Value) -> Rc<Guard> {
    let mut policy = base();
    policy["routes"][1]["limits"] = limits; // orders
    monitored(policy)
}

fn get_orders(g: &Rc<Guard>, store: &mut MemoryStore, props: Props) -> (Exchange, Effects) {
    let mut x = g.open();
    let mut props = props;
    let fx = x.on_request_headers(
        &mut request("GET", "/orders/1", &[]),
        &mut props,
        store,
        true,
    );
    (x, fx)
}

#[test]
fn a_rate_above_the_limit_raises_one_alarm_per_window_and_throttles() {
    let g = limited(json!({"requests": {"max": 3, "window_seconds": 60, "throttle": true}}));
    // Two workers: two guards, one shared store.
    let g2 = limited(json!({"requests": {"max": 3, "window_seconds": 60, "throttle": true}}));
    let mut store = MemoryStore::default();
    let start = T0 - T0 % (60 * SEC);
    let mut alarms = 0;
    let mut throttled = 0;
    for i in 0..8u64 {
        let g = if i % 2 == 0 { &g } else { &g2 };
        let (_, fx) = get_orders(
            g,
            &mut store,
            at(client("198.51.100.4:1000"), start + i * SEC),
        );
        alarms += event_kinds(&fx)
            .iter()
            .filter(|k| **k == EventKind::RateAnomaly)
            .count();
        if let Some(reply) = &fx.reply {
            assert_eq!(reply.status, 429);
            assert_eq!(
                reply.extra_headers,
                vec![("retry-after", (60 - i).to_string())]
            );
            assert!(fx.counters.contains(&crate::wire::THROTTLED_METRIC));
            throttled += 1;
        } else {
            assert!(i < 3, "request {i} passed");
        }
    }
    assert_eq!((alarms, throttled), (1, 5));
    // Another client has its own count; the next window starts over.
    let (_, fx) = get_orders(
        &g,
        &mut store,
        at(client("198.51.100.5:1000"), start + 9 * SEC),
    );
    assert!(fx.reply.is_none());
    let (_, fx) = get_orders(
        &g,
        &mut store,
        at(client("198.51.100.4:2000"), start + 61 * SEC),
    );
    assert!(fx.reply.is_none() && fx.events.is_empty());
}

#[test]
fn without_throttle_the_alarm_is_raised_and_every_request_passes() {
    let g = limited(json!({"requests": {"max": 2, "window_seconds": 10}}));
    let mut store = MemoryStore::default();
    let kinds: Vec<Vec<EventKind>> = (0..5)
        .map(|_| {
            let (_, fx) = get_orders(&g, &mut store, client("198.51.100.4:1000"));
            assert!(fx.reply.is_none());
            event_kinds(&fx)
        })
        .collect();
    assert_eq!(kinds.concat(), [EventKind::RateAnomaly]);
    assert!(
        kinds[2] == [EventKind::RateAnomaly],
        "the third request crosses"
    );
}

#[test]
fn throttling_in_report_mode_reports_and_passes() {
    let mut policy = base();
    policy["routes"][1]["limits"] =
        json!({"requests": {"max": 1, "window_seconds": 60, "throttle": true}});
    policy["routes"][1]["mode"] = json!("report");
    let g = monitored(policy);
    let mut store = MemoryStore::default();
    let all: Vec<Effects> = (0..4)
        .map(|_| get_orders(&g, &mut store, client("198.51.100.4:1000")).1)
        .collect();
    assert!(all
        .iter()
        .all(|fx| fx.reply.is_none() && fx.flow == Flow::Continue));
    let ev: Vec<_> = all.iter().flat_map(|f| f.events.iter()).collect();
    assert_eq!(ev.len(), 1);
    assert!(ev[0].report_only && ev[0].event == EventKind::RateAnomaly);
}

#[test]
fn response_volume_is_counted_at_log_and_throttles_the_next_requests() {
    let g =
        limited(json!({"response_bytes": {"max": 1000, "window_seconds": 60, "throttle": true}}));
    let mut store = MemoryStore::default();
    let mut alarms = 0;
    for i in 0..3 {
        let (mut x, fx) = get_orders(&g, &mut store, client("198.51.100.4:1000"));
        assert!(
            fx.reply.is_none(),
            "request {i}: under the limit when it came"
        );
        let fx = x.on_log(
            &mut client("198.51.100.4:1000").with_u64(Property::ResponseTotalSize, 600),
            &mut store,
        );
        alarms += event_kinds(&fx)
            .iter()
            .filter(|k| **k == EventKind::VolumeAnomaly)
            .count();
        if i == 1 {
            assert_eq!(alarms, 1, "1200 bytes crosses 1000");
            let e = fx
                .events
                .iter()
                .find(|e| e.event == EventKind::VolumeAnomaly)
                .unwrap();
            assert_eq!(
                e.detail.as_deref(),
                Some("response_bytes: more than 1000 in 60s")
            );
            assert_eq!(x.actions().events, [EventKind::VolumeAnomaly]);
        }
        if i == 1 {
            break;
        }
    }
    let (_, fx) = get_orders(&g, &mut store, client("198.51.100.4:1000"));
    assert_eq!(reply_of(&fx), (429, "rate_limited"));
    assert!(fx.events.is_empty(), "the alarm was raised once");
}

#[test]
fn fields_revealed_count_decrypted_fields() {
    let mut policy = base();
    policy["routes"][3]["limits"] = json!({"fields_revealed": {"max": 1, "window_seconds": 60}}); // open
    let g = monitored(policy);
    let mut store = MemoryStore::default();
    // A sealed value to open.
    let mut x = g.open();
    x.on_request_headers(
        &mut request("GET", "/reply-seal/1", &[]),
        &mut Props::default(),
        &mut store,
        true,
    );
    x.on_response_headers(
        &mut response(&[("content-type", "application/json")]),
        &mut Props::default(),
        &mut store,
        false,
    );
    let plain = br#"{"email":"jane@example.com"}"#;
    let sealed = x
        .on_response_body(plain.len(), true, &mut Body::of(plain))
        .body
        .unwrap()
        .bytes;
    let mut kinds = Vec::new();
    for _ in 0..3 {
        let mut x = g.open();
        x.on_request_headers(
            &mut request("GET", "/open/1", &[]),
            &mut client("192.0.2.1:1"),
            &mut store,
            true,
        );
        x.on_response_headers(
            &mut response(&[("content-type", "application/json")]),
            &mut Props::default(),
            &mut store,
            false,
        );
        x.on_response_body(sealed.len(), true, &mut Body::of(&sealed));
        kinds.extend(event_kinds(
            &x.on_log(&mut client("192.0.2.1:1"), &mut store),
        ));
    }
    assert_eq!(kinds, [EventKind::VolumeAnomaly]);
}

#[test]
fn unauthorized_answers_ours_or_the_services_make_one_burst_alarm_per_window() {
    let policy = with(
        with(
            base(),
            "monitoring",
            json!({"unauthorized_burst": {"count": 3, "window_seconds": 60}}),
        ),
        "transport",
        json!({}),
    );
    let g = monitored(policy);
    let mut store = MemoryStore::default();
    let mut kinds = Vec::new();
    for i in 0..6 {
        let mut x = g.open();
        // Plaintext to a protected route: our 403. Or the service's 401.
        let path = if i % 2 == 0 { "/orders/1" } else { "/catalog" };
        let mut p = client("198.51.100.4:1000");
        x.on_request_headers(&mut request("GET", path, &[]), &mut p, &mut store, true);
        let status = if i % 2 == 0 { 403 } else { 401 };
        let mut p = client("198.51.100.4:1000").with_u64(Property::ResponseCode, status);
        kinds.extend(event_kinds(&x.on_log(&mut p, &mut store)));
    }
    // Another client's 200s do not count.
    let mut x = g.open();
    x.on_request_headers(
        &mut request("GET", "/catalog", &[]),
        &mut Props::default(),
        &mut store,
        true,
    );
    let mut p = client("198.51.100.9:1").with_u64(Property::ResponseCode, 200);
    kinds.extend(event_kinds(&x.on_log(&mut p, &mut store)));
    let bursts = kinds
        .iter()
        .filter(|k| **k == EventKind::UnauthorizedBurst)
        .count();
    assert_eq!(bursts, 1);
}

#[test]
fn the_access_record_of_a_canary_request_does_not_hold_the_canary() {
    let g = monitored(with_canary(base(), false));
    let mut x = g.open();
    let mut p = client("203.0.113.9:5555");
    x.on_request_headers(
        &mut request("GET", &format!("/orders/{CANARY}?q={CANARY}"), &[]),
        &mut p,
        &mut MemoryStore::default(),
        true,
    );
    let fx = x.on_log(&mut p, &mut MemoryStore::default());
    let record = serde_json::to_string(fx.record.as_deref().expect("a record")).unwrap();
    assert!(!record.contains(CANARY), "{record}");
    assert!(record.contains("/orders/[canary]"), "{record}");
    assert!(record.contains("canary_accessed"), "{record}");
}
