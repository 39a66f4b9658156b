use std::time::Duration;

use super::*;
use crate::policy::{Policy, PolicyError};

fn policy(transport: &str) -> Policy {
    Policy::from_json(format!(r#"{{"version":1,"transport":{transport}}}"#).as_bytes())
        .expect("policy should load")
}

fn err(transport: &str) -> PolicyError {
    Policy::from_json(format!(r#"{{"version":1,"transport":{transport}}}"#).as_bytes())
        .expect_err("policy should be refused")
}

fn tls(version: &'static str) -> UpstreamConnection<'static> {
    UpstreamConnection {
        tls_version: Some(version),
        ..Default::default()
    }
}

const PLAIN: UpstreamConnection<'static> = UpstreamConnection {
    tls_version: None,
    uri_san: None,
    dns_san: None,
    sha256: None,
};

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn cluster(name: &str) -> Option<ClusterName> {
    Some(ClusterName::new(name))
}

fn refusal_code(step: &Step) -> Option<(u32, &'static str, EventKind)> {
    match step {
        Step::Refuse { reply, event } => Some((reply.status, reply.code, event.event)),
        _ => None,
    }
}

// ---- defaults and policy fields ------------------------------------------

#[test]
fn absent_section_means_tls12_minimum_no_exemptions() {
    let p = Policy::from_json(br#"{"version":1}"#).unwrap();
    assert_eq!(p.transport.upstream.min_tls_version, TlsVersion::V1_2);
    assert_eq!(p.transport.upstream.connect_wait, ms(5000));
    assert!(p.transport.upstream.clusters.is_empty());
    assert!(!p.transport.downstream.trusted_tls_terminator);
}

#[test]
fn min_tls_below_12_is_refused_with_field() {
    let e = err(r#"{"upstream":{"min_tls_version":"TLSv1.1"}}"#);
    assert_eq!(e.field, "transport.upstream.min_tls_version");
    let e = err(r#"{"upstream":{"min_tls_version":"tls1.3"}}"#);
    assert_eq!(e.field, "transport.upstream.min_tls_version");
}

#[test]
fn wait_bound_out_of_range_is_refused() {
    assert_eq!(
        err(r#"{"upstream":{"connect_wait_ms":0}}"#).field,
        "transport.upstream.connect_wait_ms"
    );
    assert_eq!(
        err(r#"{"upstream":{"connect_wait_ms":60001}}"#).field,
        "transport.upstream.connect_wait_ms"
    );
}

#[test]
fn unknown_transport_field_is_named() {
    let e = err(r#"{"upstream":{"min_tls":"TLSv1.2"}}"#);
    assert_eq!(e.field, "transport.upstream.min_tls");
    let e = err(r#"{"downstream":{"trusted_terminator":true}}"#);
    assert_eq!(e.field, "transport.downstream.trusted_terminator");
}

#[test]
fn cluster_rule_needs_exactly_one_of_pin_or_exempt() {
    assert_eq!(
        err(r#"{"upstream":{"clusters":{"a":{}}}}"#).field,
        "transport.upstream.clusters.a"
    );
    assert_eq!(
        err(r#"{"upstream":{"clusters":{"a":{"pin":{"dns_san":"x"},"exempt":{"reason":"r"}}}}}"#)
            .field,
        "transport.upstream.clusters.a"
    );
    assert_eq!(
        err(r#"{"upstream":{"clusters":{"a":{"pin":{}}}}}"#).field,
        "transport.upstream.clusters.a.pin"
    );
    assert_eq!(
        err(r#"{"upstream":{"clusters":{"a":{"exempt":{"reason":"  "}}}}}"#).field,
        "transport.upstream.clusters.a.exempt.reason"
    );
    assert_eq!(
        err(r#"{"upstream":{"clusters":{"a":{"pin":{"sha256":"abc"}}}}}"#).field,
        "transport.upstream.clusters.a.pin.sha256"
    );
}

#[test]
fn sha256_pin_accepts_openssl_colon_form() {
    let colon = (0..32).map(|_| "AB").collect::<Vec<_>>().join(":");
    let p = policy(&format!(
        r#"{{"upstream":{{"clusters":{{"a":{{"pin":{{"sha256":"{colon}"}}}}}}}}}}"#
    ));
    let rule = p.transport.upstream.rule(cluster("a").as_ref()).unwrap();
    assert_eq!(
        rule,
        &ClusterRule::Pin(PeerPin {
            sha256: Some("ab".repeat(32)),
            ..Default::default()
        })
    );
}

// ---- the state machine ----------------------------------------------------

#[test]
fn pooled_tls_connection_is_allowed_at_once() {
    let p = policy("{}");
    let mut c = UpstreamCheck::new(cluster("api"));
    let step = c.observe(
        &p.transport.upstream,
        Observation::Connected(tls("TLSv1.3")),
        ms(0),
    );
    assert_eq!(step, Step::Allow);
    assert!(c.pooled());
    assert_eq!(c.state(), CheckState::Allowed);
}

#[test]
fn pooled_plaintext_connection_is_refused_at_once() {
    let p = policy("{}");
    let mut c = UpstreamCheck::new(cluster("api"));
    let step = c.observe(&p.transport.upstream, Observation::Connected(PLAIN), ms(0));
    assert_eq!(
        refusal_code(&step),
        Some((502, "upstream_not_tls", EventKind::UpstreamPlaintextRefused))
    );
    let Step::Refuse { event, reply } = &step else {
        unreachable!()
    };
    assert!(event.detail.as_deref().unwrap().contains("pooled"));
    assert!(reply.body.contains("\"error\":\"upstream_not_tls\""));
    assert_eq!(c.state(), CheckState::Refused(UpstreamRefusal::Plaintext));
}

#[test]
fn not_connected_waits_then_decides_when_connected() {
    let p = policy("{}");
    let u = &p.transport.upstream;
    let mut c = UpstreamCheck::new(cluster("api"));
    assert_eq!(c.observe(u, Observation::NotConnected, ms(0)), Step::Wait);
    assert_eq!(c.observe(u, Observation::NotConnected, ms(2)), Step::Wait);
    assert!(c.is_waiting());
    assert_eq!(
        c.observe(u, Observation::Connected(tls("TLSv1.2")), ms(3)),
        Step::Allow
    );
    assert!(!c.pooled());
}

#[test]
fn not_connected_then_plaintext_is_refused_as_new_connection() {
    let p = policy("{}");
    let u = &p.transport.upstream;
    let mut c = UpstreamCheck::new(cluster("api"));
    assert_eq!(c.observe(u, Observation::NotConnected, ms(0)), Step::Wait);
    let step = c.observe(u, Observation::Connected(PLAIN), ms(1));
    let Step::Refuse { event, .. } = &step else {
        panic!("expected refusal, got {step:?}")
    };
    assert_eq!(event.event, EventKind::UpstreamPlaintextRefused);
    assert!(event.detail.as_deref().unwrap().contains("new connection"));
    assert!(event.detail.as_deref().unwrap().contains("cluster=api"));
}

#[test]
fn never_connected_is_refused_at_the_wait_bound() {
    let p = policy(r#"{"upstream":{"connect_wait_ms":50}}"#);
    let u = &p.transport.upstream;
    let mut c = UpstreamCheck::new(cluster("api"));
    assert_eq!(c.observe(u, Observation::NotConnected, ms(49)), Step::Wait);
    let step = c.observe(u, Observation::NotConnected, ms(50));
    assert_eq!(
        refusal_code(&step),
        Some((504, "upstream_connect_wait", EventKind::UpstreamWaitExpired))
    );
}

#[test]
fn connection_gone_abandons_without_reply() {
    let p = policy("{}");
    let u = &p.transport.upstream;
    let mut c = UpstreamCheck::new(None);
    assert_eq!(c.observe(u, Observation::NotConnected, ms(0)), Step::Wait);
    let step = c.observe(u, Observation::Gone, ms(3));
    let Step::Abandon { event } = step else {
        panic!("expected abandon")
    };
    assert_eq!(event.event, EventKind::UpstreamConnectionGone);
    assert_eq!(c.state(), CheckState::Abandoned);
}

#[test]
fn a_decided_check_ignores_later_observations() {
    let p = policy("{}");
    let u = &p.transport.upstream;
    let mut c = UpstreamCheck::new(None);
    assert_eq!(
        c.observe(u, Observation::Connected(PLAIN), ms(0)),
        Step::Refuse {
            reply: UpstreamRefusal::Plaintext.reply(),
            event: SecurityEvent::new(EventKind::UpstreamPlaintextRefused)
                .detail("cluster=unknown; pooled connection"),
        }
    );
    // A later good observation must not turn a refusal into an allow.
    assert_eq!(
        c.observe(u, Observation::Connected(tls("TLSv1.3")), ms(1)),
        Step::Settled
    );
    assert_eq!(c.state(), CheckState::Refused(UpstreamRefusal::Plaintext));
}

#[test]
fn tls_below_minimum_and_unknown_versions_are_refused() {
    let p = policy(r#"{"upstream":{"min_tls_version":"TLSv1.3"}}"#);
    let u = &p.transport.upstream;
    for v in ["TLSv1.2", "TLSv1.1", "TLSv1", "SSLv3", "unknown", ""] {
        let mut c = UpstreamCheck::new(None);
        let step = c.observe(u, Observation::Connected(tls(v)), ms(0));
        assert_eq!(
            refusal_code(&step),
            Some((
                502,
                "upstream_tls_version",
                EventKind::UpstreamTlsVersionRefused
            )),
            "{v}"
        );
    }
    let mut c = UpstreamCheck::new(None);
    assert_eq!(
        c.observe(u, Observation::Connected(tls("TLSv1.3")), ms(0)),
        Step::Allow
    );
}

#[test]
fn pins_compare_each_configured_field() {
    let p = policy(
        r#"{"upstream":{"clusters":{
            "uri":{"pin":{"uri_san":"spiffe://corp/billing"}},
            "dns":{"pin":{"dns_san":"billing.internal"}},
            "both":{"pin":{"dns_san":"billing.internal","sha256":"00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff"}}
        }}}"#,
    );
    let u = &p.transport.upstream;
    let conn = UpstreamConnection {
        tls_version: Some("TLSv1.3"),
        uri_san: Some("spiffe://corp/billing"),
        dns_san: Some("billing.internal"),
        sha256: Some("00112233445566778899AABBCCDDEEFF00112233445566778899aabbccddeeff"),
    };
    for name in ["uri", "dns", "both"] {
        assert_eq!(u.verify(cluster(name).as_ref(), &conn), Ok(()), "{name}");
    }
    let wrong_uri = UpstreamConnection {
        uri_san: Some("spiffe://corp/other"),
        ..conn
    };
    assert_eq!(
        u.verify(cluster("uri").as_ref(), &wrong_uri),
        Err(UpstreamRefusal::IdentityMismatch)
    );
    let no_dns = UpstreamConnection {
        dns_san: None,
        ..conn
    };
    assert_eq!(
        u.verify(cluster("dns").as_ref(), &no_dns),
        Err(UpstreamRefusal::IdentityMismatch)
    );
    let wrong_sha = UpstreamConnection {
        sha256: Some("ff"),
        ..conn
    };
    assert_eq!(
        u.verify(cluster("both").as_ref(), &wrong_sha),
        Err(UpstreamRefusal::IdentityMismatch)
    );
    // A pin never excuses plaintext.
    assert_eq!(
        u.verify(cluster("uri").as_ref(), &PLAIN),
        Err(UpstreamRefusal::Plaintext)
    );
    // Clusters without a rule only need TLS.
    assert_eq!(u.verify(cluster("other").as_ref(), &tls("TLSv1.2")), Ok(()));
}

#[test]
fn exempt_cluster_is_allowed_plaintext_and_warned_at_start() {
    let p = policy(r#"{"upstream":{"clusters":{"legacy":{"exempt":{"reason":"vendor VPN"}}}}}"#);
    let u = &p.transport.upstream;
    assert_eq!(u.verify(cluster("legacy").as_ref(), &PLAIN), Ok(()));
    // Exemption is by exact name only.
    assert_eq!(
        u.verify(cluster("legacy2").as_ref(), &PLAIN),
        Err(UpstreamRefusal::Plaintext)
    );
    assert_eq!(u.verify(None, &PLAIN), Err(UpstreamRefusal::Plaintext));
    let warnings = startup_warnings(&p);
    assert_eq!(warnings.len(), 1);
    assert_eq!(warnings[0].event, EventKind::UpstreamTlsExemption);
    assert_eq!(warnings[0].severity, crate::Severity::Warning);
    assert!(warnings[0]
        .detail
        .as_deref()
        .unwrap()
        .contains("cluster=legacy; reason: vendor VPN"));
}

// ---- downstream -------------------------------------------------------------

fn protected() -> Policy {
    Policy::from_json(br#"{"version":1,"routes":[{"name":"pii","match":{"path":{"prefix":"/"}}}]}"#)
        .unwrap()
}

#[test]
fn protected_route_refuses_plaintext_downstream() {
    let p = protected();
    let route = &p.routes[0];
    let (reply, event) = p.downstream_refusal(route, None, "POST").unwrap();
    assert_eq!((reply.status, reply.code), (403, "downstream_tls_required"));
    assert_eq!(event.event, EventKind::DownstreamPlaintextRefused);
    assert_eq!(event.route.as_deref(), Some("pii"));
    assert!(p
        .downstream_refusal(route, Some("TLSv1.1"), "GET")
        .is_some());
    assert!(p
        .downstream_refusal(route, Some("TLSv1.2"), "GET")
        .is_none());
    assert!(p
        .downstream_refusal(route, Some("TLSv1.3"), "GET")
        .is_none());
}

#[test]
fn trusted_terminator_accepts_plaintext_and_is_warned() {
    let p = Policy::from_json(
        br#"{"version":1,"routes":[{"name":"pii"}],"transport":{"downstream":{"trusted_tls_terminator":true}}}"#,
    )
    .unwrap();
    assert!(p.downstream_refusal(&p.routes[0], None, "GET").is_none());
    let w = startup_warnings(&p);
    assert_eq!(w.len(), 1);
    assert_eq!(w[0].event, EventKind::TrustedTlsTerminator);
}

// ---- defence in depth -----------------------------------------------------

#[test]
fn plaintext_upstream_seen_after_the_fact_is_reported() {
    let p = policy(r#"{"upstream":{"clusters":{"legacy":{"exempt":{"reason":"r"}}}}}"#);
    let api = cluster("api");
    let via = Some("via_upstream");
    let ev = p
        .plaintext_upstream_seen(api.as_ref(), true, None, via, "response")
        .unwrap();
    assert_eq!(ev.event, EventKind::PlaintextUpstreamObserved);
    assert_eq!(ev.severity, crate::Severity::Critical);
    assert!(ev.detail.unwrap().contains("cluster=api; seen at response"));
    // The upstream reset the stream after the request went out: still a leak.
    assert!(p
        .plaintext_upstream_seen(
            api.as_ref(),
            true,
            None,
            Some("upstream_reset_before_response_started{connection_termination}"),
            "log"
        )
        .is_some());
    // TLS, no connection at all, or an exempt cluster: nothing to report.
    assert!(p
        .plaintext_upstream_seen(api.as_ref(), true, Some("TLSv1.3"), via, "log")
        .is_none());
    assert!(p
        .plaintext_upstream_seen(api.as_ref(), false, None, via, "log")
        .is_none());
    assert!(p
        .plaintext_upstream_seen(cluster("legacy").as_ref(), true, None, via, "log")
        .is_none());
}

#[test]
fn a_refusal_by_the_guard_is_not_a_plaintext_exchange() {
    // The guard's local reply: the connection exists and is plaintext, but
    // nothing was sent on it.
    let p = policy("{}");
    for details in [None, Some(""), Some("wasm_local_reply")] {
        assert!(p
            .plaintext_upstream_seen(cluster("api").as_ref(), true, None, details, "response")
            .is_none());
    }
}

/// Report mode: the same observations raise the same events (flagged),
/// the request goes on; a check that could not run is still refused.
#[test]
fn report_mode_allows_what_enforce_refuses_with_the_same_event() {
    let enforce = policy(r#"{"upstream":{"connect_wait_ms":50}}"#);
    let report = policy(r#"{"upstream":{"connect_wait_ms":50,"mode":"report"}}"#);
    let wide = Policy::from_json(br#"{"version":1,"mode":"report"}"#).unwrap();
    assert!(
        wide.transport.upstream.mode.is_report(),
        "follows the policy's mode"
    );
    let cases: [(Observation<'_>, Duration); 3] = [
        (Observation::Connected(PLAIN), ms(0)),
        (Observation::Connected(tls("TLSv1.1")), ms(0)),
        (Observation::NotConnected, ms(50)),
    ];
    for (obs, waited) in cases {
        let mut e = UpstreamCheck::new(cluster("orders"));
        let mut r = UpstreamCheck::new(cluster("orders"));
        let se = e.observe(&enforce.transport.upstream, obs, waited);
        let sr = r.observe(&report.transport.upstream, obs, waited);
        let Step::Refuse { event, .. } = &se else {
            panic!("enforce refuses {obs:?}: {se:?}");
        };
        let Step::Report { event: flagged } = &sr else {
            panic!("report allows {obs:?}: {sr:?}");
        };
        assert!(flagged.report_only && !event.report_only);
        assert_eq!(flagged.event, event.event);
        assert_eq!(flagged.detail, event.detail);
        assert_eq!(r.state(), CheckState::Allowed);
        assert_eq!(
            sr.counter(true),
            Some(crate::wire::upstream_metrics::REPORTED)
        );
    }
    let mut r = UpstreamCheck::new(cluster("orders"));
    let fault = crate::stream::HostFault::status("proxy_get_property", 1);
    assert!(matches!(r.host_failed(fault), Step::Refuse { .. }));
}
