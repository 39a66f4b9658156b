//! Access checks through the exchange: principals from mTLS, JWT claims
//! and a trusted header, generic identities, roles, address allowlists,
//! lockout across workers, and need-to-know on decrypted fields. Each
//! control has its adversarial cases next to it.

use super::*;
use crate::access_control::encode_list;
use crate::logkey::LogKey;
use crate::stream::shared::MemoryStore;

const LOG_KEY: &str = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";
const SEC: u64 = 1_000_000_000;
const T0: u64 = 1_767_225_600 * SEC;
const GATEWAY: &str = "spiffe://mesh.example/ns/edge/sa/gateway";

fn policy() -> Value {
    json!({
        "version": 1,
        "keys": {"env": "DPP_KEYS"},
        "principals": {
            "sources": [
                {"mtls": {"identity": "uri_san"}},
                {"jwt": {"provider": "idp", "payload_key": "jwt_payload", "claim": "sub", "roles_claim": "roles"}},
                {"header": {"name": "x-dpp-principal", "set_by": GATEWAY}}
            ],
            "generic": ["batch-*"],
            "roles": [
                {"principal": "spiffe://mesh.example/ns/shop/sa/*", "roles": ["service"]},
                {"principal": "carol", "roles": ["support"]}
            ]
        },
        "lockout": {"after": 3, "window_seconds": 60, "duration_seconds": 30},
        "routes": [
            {"name": "buyers", "match": {"path": {"prefix": "/buyers/"}},
             "access": {"require_principal": true, "roles": ["support", "service"], "lockout": true},
             "decrypt": [
                {"direction": "response", "selectors": ["$.email"], "reveal_to": ["pii-reader"]},
                {"direction": "response", "selectors": ["$.phone"], "reveal_to": ["pii-reader"], "otherwise": "redact"},
                {"direction": "response", "selectors": ["$.name"]}
             ]},
            {"name": "seal", "match": {"path": {"prefix": "/seal/"}},
             "encrypt": [{"direction": "response", "selectors": ["$.email", "$.phone", "$.name"]}]},
            {"name": "internal", "match": {"path": {"prefix": "/internal/"}},
             "access": {"allow_cidrs": ["10.0.0.0/8", "::1/128"]}},
            {"name": "open", "match": {"path": {"prefix": "/open/"}}}
        ],
        "transport": {"downstream": {"trusted_tls_terminator": true}},
        "logging": {"access_records": "protected"}
    })
}

fn keyed_guard(policy: Value) -> Rc<Guard> {
    let policy = Policy::from_json(policy.to_string().as_bytes()).expect("valid policy");
    let keyring = policy.keys.as_ref().map(|_| Keyring::parse(KEYS).unwrap());
    let key = LogKey::parse(LOG_KEY).unwrap();
    let scrubber = policy
        .logging
        .scrubber(Some(&key), policy.selector_leaf_names());
    Rc::new(Guard::new(policy, keyring, scrubber))
}

fn pseudonym(value: &str) -> String {
    LogKey::parse(LOG_KEY)
        .unwrap()
        .pseudonymizer()
        .pseudonym(value)
}

/// A JWT `jwt_authn` verified, as its claims reach the filter.
fn jwt(props: Props, sub: &str, roles: &[&str]) -> Props {
    let mut p = props;
    let base = "metadata.filter_metadata.envoy.filters.http.jwt_authn.jwt_payload";
    p.paths
        .insert(format!("{base}.sub"), sub.as_bytes().to_vec());
    p.paths.insert(format!("{base}.roles"), encode_list(roles));
    p
}

fn mtls(uri_san: &str) -> Props {
    Props::default()
        .with(Property::DownstreamMtls, "\u{1}")
        .with(Property::PeerUriSan, uri_san)
}

fn at(props: Props, now: u64) -> Props {
    Props {
        now: Some(now),
        ..props
    }
}

/// Request headers of one stream; the effects and the exchange.
fn call(
    g: &Rc<Guard>,
    path: &str,
    extra: &[(&str, &str)],
    props: &mut Props,
    store: &mut MemoryStore,
) -> (Exchange, Effects) {
    let mut x = g.open();
    let fx = x.on_request_headers(&mut request("GET", path, extra), props, store, true);
    (x, fx)
}

fn refused_with(fx: &Effects) -> Option<(u32, &'static str)> {
    fx.reply.as_ref().map(|r| (r.status, r.code))
}

// ---- principals and roles ---------------------------------------------------

#[test]
fn no_principal_is_401_and_nothing_goes_on() {
    let g = keyed_guard(policy());
    let (x, fx) = call(
        &g,
        "/buyers/1",
        &[],
        &mut Props::default(),
        &mut MemoryStore::default(),
    );
    assert_eq!(refused_with(&fx), Some((401, "principal_required")));
    assert_eq!(fx.flow, Flow::Pause);
    assert_eq!(event_kinds(&fx), [EventKind::PrincipalRequired]);
    let reply = fx.reply.as_ref().unwrap();
    assert!(reply
        .extra_headers
        .contains(&("www-authenticate", "Bearer".to_owned())));
    assert!(x.refused());
}

#[test]
fn mtls_uri_san_is_the_principal_and_the_map_grants_roles() {
    let g = keyed_guard(policy());
    let mut p = mtls("spiffe://mesh.example/ns/shop/sa/orders");
    let (x, fx) = call(&g, "/buyers/1", &[], &mut p, &mut MemoryStore::default());
    assert!(fx.reply.is_none(), "{fx:?}");
    assert_eq!(x.roles(), ["service"]);
    let subject = x.subject().unwrap();
    assert_eq!(subject.kind, SubjectKind::Principal);
    assert_eq!(
        subject.pseudonym,
        pseudonym("spiffe://mesh.example/ns/shop/sa/orders")
    );
}

#[test]
fn jwt_claims_name_the_principal_and_its_roles() {
    let g = keyed_guard(policy());
    let mut p = jwt(Props::default(), "dana", &["support", "pii-reader"]);
    let (x, fx) = call(&g, "/buyers/1", &[], &mut p, &mut MemoryStore::default());
    assert!(fx.reply.is_none(), "{fx:?}");
    assert_eq!(x.roles(), ["support", "pii-reader"]);

    // `scope` is a space-separated list.
    let mut doc = policy();
    doc["principals"]["sources"][1]["jwt"]["roles_claim"] = json!("scope");
    let g = keyed_guard(doc);
    let mut p = Props::default();
    let base = "metadata.filter_metadata.envoy.filters.http.jwt_authn.jwt_payload";
    p.paths.insert(format!("{base}.sub"), b"dana".to_vec());
    p.paths
        .insert(format!("{base}.scope"), b"openid support".to_vec());
    let (x, fx) = call(&g, "/buyers/1", &[], &mut p, &mut MemoryStore::default());
    assert!(fx.reply.is_none(), "{fx:?}");
    assert_eq!(x.roles(), ["openid", "support"]);
}

#[test]
fn a_caller_without_an_admitted_role_is_denied() {
    let g = keyed_guard(policy());
    let mut p = jwt(Props::default(), "erin", &["viewer", "SUPPORT"]);
    let (_, fx) = call(&g, "/buyers/1", &[], &mut p, &mut MemoryStore::default());
    assert_eq!(refused_with(&fx), Some((403, "access_denied")));
    assert_eq!(event_kinds(&fx), [EventKind::AccessDenied]);
    // The event names the caller only by pseudonym.
    let line = fx.events[0].to_log_line();
    assert!(!line.contains("erin"), "{line}");
    assert!(line.contains(&pseudonym("erin")), "{line}");
}

#[test]
fn generic_identities_are_refused_in_any_spelling() {
    let g = keyed_guard(policy());
    for sub in [
        "admin",
        "Admin",
        "ROOT",
        "guest@example.com",
        "batch-7",
        "Test",
    ] {
        let mut p = jwt(Props::default(), sub, &["support"]);
        let (_, fx) = call(&g, "/buyers/1", &[], &mut p, &mut MemoryStore::default());
        assert_eq!(
            refused_with(&fx),
            Some((403, "generic_identity_refused")),
            "{sub}"
        );
        assert!(!fx.events[0].to_log_line().contains(sub));
    }
    let mut p = mtls("spiffe://mesh.example/ns/shop/sa/default");
    let (_, fx) = call(&g, "/buyers/1", &[], &mut p, &mut MemoryStore::default());
    assert_eq!(refused_with(&fx), Some((403, "generic_identity_refused")));
}

#[test]
fn an_array_subject_names_no_principal() {
    let g = keyed_guard(policy());
    let mut p = Props::default();
    let base = "metadata.filter_metadata.envoy.filters.http.jwt_authn.jwt_payload";
    p.paths
        .insert(format!("{base}.sub"), encode_list(&["carol", "root"]));
    let (_, fx) = call(&g, "/buyers/1", &[], &mut p, &mut MemoryStore::default());
    assert_eq!(refused_with(&fx), Some((401, "principal_required")));
}

// ---- the trusted header -----------------------------------------------------

#[test]
fn the_trusted_header_counts_only_from_the_trusted_hop() {
    let g = keyed_guard(policy());
    // From the gateway: carol, with the map's role.
    let mut p = mtls(GATEWAY);
    let (x, fx) = call(
        &g,
        "/buyers/1",
        &[("x-dpp-principal", "carol")],
        &mut p,
        &mut MemoryStore::default(),
    );
    assert!(fx.reply.is_none(), "{fx:?}");
    assert!(!removes(&fx, "x-dpp-principal"));
    assert_eq!(x.roles(), ["support"]);
}

#[test]
fn a_client_sent_principal_header_is_removed_and_not_believed() {
    let g = keyed_guard(policy());
    // No client certificate: a spoofed header.
    let mut p = Props::default();
    let (x, fx) = call(
        &g,
        "/buyers/1",
        &[("x-dpp-principal", "carol")],
        &mut p,
        &mut MemoryStore::default(),
    );
    assert_eq!(refused_with(&fx), Some((401, "principal_required")));
    assert_eq!(
        event_kinds(&fx),
        [
            EventKind::UntrustedPrincipalHeader,
            EventKind::PrincipalRequired
        ]
    );
    assert!(x.subject().is_none());
    // Another peer's certificate, even one with a similar name.
    for peer in [
        "spiffe://mesh.example/ns/edge/sa/gateway2",
        "SPIFFE://mesh.example/ns/edge/sa/gateway",
    ] {
        let mut p = mtls(peer);
        let (_, fx) = call(
            &g,
            "/open/1",
            &[("x-dpp-principal", "carol")],
            &mut p,
            &mut MemoryStore::default(),
        );
        assert!(removes(&fx, "x-dpp-principal"), "{peer}");
        assert!(
            fx.reply.is_none(),
            "an unprotected route still passes, without the header"
        );
        assert_eq!(event_kinds(&fx), [EventKind::UntrustedPrincipalHeader]);
    }
}

// ---- client address ---------------------------------------------------------

#[test]
fn socket_addresses_outside_the_allowlist_are_refused() {
    let g = keyed_guard(policy());
    for (addr, ok) in [
        ("10.1.2.3:4444", true),
        ("[::1]:5000", true),
        ("[::ffff:10.9.9.9]:1", true),
        ("192.0.2.7:4444", false),
        ("[2001:db8::1]:443", false),
        ("not-an-address", false),
    ] {
        let mut p = Props::default().with(Property::SourceAddress, addr);
        let (_, fx) = call(
            &g,
            "/internal/x",
            &[("x-forwarded-for", "10.0.0.1")],
            &mut p,
            &mut MemoryStore::default(),
        );
        match ok {
            true => assert!(fx.reply.is_none(), "{addr}: {fx:?}"),
            false => {
                assert_eq!(
                    refused_with(&fx),
                    Some((403, "client_address_refused")),
                    "{addr}"
                );
                assert!(!fx.events[0]
                    .to_log_line()
                    .contains(addr.split(':').next().unwrap()));
            }
        }
    }
    // No address at all: refused.
    let (_, fx) = call(
        &g,
        "/internal/x",
        &[],
        &mut Props::default(),
        &mut MemoryStore::default(),
    );
    assert_eq!(refused_with(&fx), Some((403, "client_address_refused")));
}

#[test]
fn forwarded_for_is_read_only_up_to_the_trusted_hops() {
    let mut doc = policy();
    doc["client_address"] = json!({"source": "x-forwarded-for", "trusted_hops": 1});
    let g = keyed_guard(doc);
    let xff = |v: &str| {
        let (_, fx) = call(
            &g,
            "/internal/x",
            &[("x-forwarded-for", v)],
            &mut Props::default().with(Property::SourceAddress, "10.0.0.9:1"),
            &mut MemoryStore::default(),
        );
        refused_with(&fx)
    };
    assert_eq!(
        xff("203.0.113.9, 10.4.4.4"),
        None,
        "the hop's entry is inside"
    );
    // The client prepends an inside address: only the hop's entry counts.
    assert_eq!(
        xff("10.0.0.5, 203.0.113.9"),
        Some((403, "client_address_refused"))
    );
    assert_eq!(
        xff("10.0.0.5,203.0.113.9"),
        Some((403, "client_address_refused"))
    );
    assert_eq!(xff("garbage"), Some((403, "client_address_refused")));
    // Without the header the socket peer does not stand in.
    let (_, fx) = call(
        &g,
        "/internal/x",
        &[],
        &mut Props::default().with(Property::SourceAddress, "10.0.0.9:1"),
        &mut MemoryStore::default(),
    );
    assert_eq!(refused_with(&fx), Some((403, "client_address_refused")));
}

// ---- lockout ----------------------------------------------------------------

#[test]
fn lockout_starts_at_exactly_n_across_workers_and_ends_after_the_period() {
    // Two workers of one proxy: two guards over one shared store.
    let workers = [keyed_guard(policy()), keyed_guard(policy())];
    let mut store = MemoryStore::default();
    let wrong = |now| at(jwt(Props::default(), "erin", &["viewer"]), now);
    for i in 0..3u64 {
        let g = &workers[(i % 2) as usize];
        let (x, fx) = call(g, "/buyers/1", &[], &mut wrong(T0 + i * SEC), &mut store);
        assert_eq!(
            refused_with(&fx),
            Some((403, "access_denied")),
            "attempt {i}"
        );
        let started = event_kinds(&fx).contains(&EventKind::LockoutStarted);
        assert_eq!(started, i == 2, "the third failure starts the lockout");
        if started {
            let e = fx
                .events
                .iter()
                .find(|e| e.event == EventKind::LockoutStarted)
                .unwrap();
            assert_eq!(e.subject.as_deref(), Some(pseudonym("erin").as_str()));
            assert_eq!(x.subject().unwrap().pseudonym, pseudonym("erin"));
        }
    }
    // Locked out now, even with the right role, on either worker.
    let right = |now| at(jwt(Props::default(), "erin", &["support"]), now);
    for (i, g) in workers.iter().enumerate() {
        let (_, fx) = call(g, "/buyers/1", &[], &mut right(T0 + 5 * SEC), &mut store);
        assert_eq!(
            refused_with(&fx),
            Some((403, "principal_locked_out")),
            "worker {i}"
        );
        let reply = fx.reply.as_ref().unwrap();
        // Locked at T0+2s for 30 s: 27 s left.
        assert!(reply
            .extra_headers
            .contains(&("retry-after", "27".to_owned())));
        assert_eq!(event_kinds(&fx), [EventKind::PrincipalLockedOut]);
    }
    // Another principal is not affected.
    let (_, fx) = call(
        &workers[0],
        "/buyers/1",
        &[],
        &mut at(jwt(Props::default(), "dana", &["support"]), T0 + 6 * SEC),
        &mut store,
    );
    assert!(fx.reply.is_none(), "{fx:?}");
    // Refusals during the lockout do not prolong it.
    let (_, fx) = call(
        &workers[1],
        "/buyers/1",
        &[],
        &mut right(T0 + 31 * SEC),
        &mut store,
    );
    assert_eq!(refused_with(&fx), Some((403, "principal_locked_out")));
    let (_, fx) = call(
        &workers[1],
        "/buyers/1",
        &[],
        &mut right(T0 + 32 * SEC),
        &mut store,
    );
    assert!(fx.reply.is_none(), "the lockout ended: {fx:?}");
}

#[test]
fn the_services_401_and_403_count_too() {
    let g = keyed_guard(policy());
    let mut store = MemoryStore::default();
    for (i, status) in ["401", "403", "200", "403"].iter().enumerate() {
        let mut p = at(jwt(Props::default(), "dana", &["support"]), T0 + i as u64);
        let (mut x, fx) = call(&g, "/buyers/1", &[], &mut p, &mut store);
        assert!(fx.reply.is_none());
        let fx = x.on_response_headers(
            &mut Headers::new(&[(":status", status)]),
            &mut p,
            &mut store,
            true,
        );
        assert_eq!(
            event_kinds(&fx).contains(&EventKind::LockoutStarted),
            i == 3,
            "three failures (the 200 does not count)"
        );
    }
    let mut p = at(jwt(Props::default(), "dana", &["support"]), T0 + 10);
    let (_, fx) = call(&g, "/buyers/1", &[], &mut p, &mut store);
    assert_eq!(refused_with(&fx), Some((403, "principal_locked_out")));
}

#[test]
fn without_a_principal_the_client_address_is_locked_out() {
    let g = keyed_guard(policy());
    let mut store = MemoryStore::default();
    let from = |addr: &str, now| at(Props::default().with(Property::SourceAddress, addr), now);
    for i in 0..3 {
        let (x, fx) = call(
            &g,
            "/buyers/1",
            &[],
            &mut from("192.0.2.7:1000", T0 + i),
            &mut store,
        );
        assert_eq!(refused_with(&fx), Some((401, "principal_required")));
        assert_eq!(x.subject().unwrap().kind, SubjectKind::ClientAddress);
        assert_eq!(x.subject().unwrap().pseudonym, pseudonym("192.0.2.7"));
    }
    // Another port of the same address is the same subject.
    let (_, fx) = call(
        &g,
        "/buyers/1",
        &[],
        &mut from("192.0.2.7:2000", T0 + 9),
        &mut store,
    );
    assert_eq!(refused_with(&fx), Some((403, "principal_locked_out")));
    // Shared-data keys hold the pseudonym, never the address.
    let debug = format!("{store:?}");
    assert!(!debug.contains("192.0.2.7"), "{debug}");
}

#[test]
fn lockout_without_a_log_key_fails_closed() {
    let g = guard(policy());
    let mut p = jwt(Props::default(), "dana", &["support"]);
    let (_, fx) = call(&g, "/buyers/1", &[], &mut p, &mut MemoryStore::default());
    assert_eq!(refused_with(&fx), Some((500, "check_unavailable")));
    assert_eq!(event_kinds(&fx), [EventKind::LogKeyUnavailable]);
}

#[test]
fn an_unreadable_claim_fails_closed() {
    struct Failing(Props);
    impl PropertySource for Failing {
        fn get(&mut self, p: Property) -> Result<Option<Vec<u8>>, HostFault> {
            self.0.get(p)
        }
        fn unix_time_nanos(&mut self) -> u64 {
            T0
        }
        fn get_path(&mut self, _: &[&str]) -> Result<Option<Vec<u8>>, HostFault> {
            Err(HostFault::status("proxy_get_property", 10))
        }
    }
    let g = keyed_guard(policy());
    let mut x = g.open();
    let fx = x.on_request_headers(
        &mut request("GET", "/buyers/1", &[]),
        &mut Failing(Props::default()),
        &mut MemoryStore::default(),
        true,
    );
    assert_eq!(refused_with(&fx), Some((500, "check_unavailable")));
    assert_eq!(event_kinds(&fx), [EventKind::HostCallFailed]);
}

// ---- need-to-know -----------------------------------------------------------

const RECORD: &[u8] =
    br#"{"email":"jane@example.com","phone":"+1 555 0100","name":"Jane Doe","id":7}"#;

fn sealed_record(g: &Rc<Guard>) -> Vec<u8> {
    let mut x = g.open();
    let mut store = MemoryStore::default();
    x.on_request_headers(
        &mut request("GET", "/seal/1", &[]),
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
    let fx = x.on_response_body(RECORD.len(), true, &mut Body::of(RECORD));
    fx.body.expect("sealed").bytes
}

fn read_buyer(g: &Rc<Guard>, roles: &[&str], body: &[u8]) -> (Exchange, Effects) {
    let mut store = MemoryStore::default();
    let mut p = jwt(Props::default(), "dana", roles);
    let (mut x, fx) = call(g, "/buyers/1", &[], &mut p, &mut store);
    assert!(fx.reply.is_none(), "{fx:?}");
    x.on_response_headers(
        &mut response(&[("content-type", "application/json")]),
        &mut p,
        &mut store,
        false,
    );
    let fx = x.on_response_body(body.len(), true, &mut Body::of(body));
    (x, fx)
}

#[test]
fn entitled_roles_see_plaintext_others_keep_envelopes_or_get_redactions() {
    let g = keyed_guard(policy());
    let sealed = sealed_record(&g);
    let sealed_json: Value = serde_json::from_slice(&sealed).unwrap();

    let (x, fx) = read_buyer(&g, &["support", "pii-reader"], &sealed);
    let out = replaced(&fx);
    assert_eq!(out["email"], "jane@example.com");
    assert_eq!(out["phone"], "+1 555 0100");
    assert_eq!(out["name"], "Jane Doe");
    let a = x.actions();
    assert_eq!(
        (a.fields_decrypted, a.fields_kept, a.fields_redacted),
        (3, 0, 0)
    );

    let (mut x, fx) = read_buyer(&g, &["support"], &sealed);
    let out = replaced(&fx);
    assert_eq!(out["email"], sealed_json["email"], "kept sealed");
    assert_eq!(out["phone"], "[redacted]");
    assert_eq!(
        out["name"], "Jane Doe",
        "a rule without reveal_to opens for every admitted caller"
    );
    assert_eq!(out["id"], 7);
    let a = x.actions().clone();
    assert_eq!(
        (a.fields_decrypted, a.fields_kept, a.fields_redacted),
        (1, 1, 1)
    );
    let fx = x.on_log(&mut Props::default(), &mut MemoryStore::default());
    let record = serde_json::to_value(fx.record.as_deref().unwrap()).unwrap();
    assert_eq!(record["actions"]["fields_kept"], 1);
    assert_eq!(record["actions"]["fields_redacted"], 1);
    assert_eq!(record["principal"], pseudonym("dana"));
}

#[test]
fn a_kept_field_must_still_be_an_envelope() {
    let g = keyed_guard(policy());
    // The upstream (or someone on the way) put plaintext where an envelope
    // belongs: a caller without the role must not get it either.
    let (_, fx) = read_buyer(&g, &["support"], RECORD);
    assert_eq!(reply_of(&fx), (502, "envelope_rejected"));
}

#[test]
fn generic_principals_see_no_guarded_field() {
    let mut doc = policy();
    // A route that admits anyone (no access section) but guards a field.
    doc["routes"][0].as_object_mut().unwrap().remove("access");
    let g = keyed_guard(doc);
    let sealed = sealed_record(&g);
    let (_, fx) = read_buyer(&g, &["pii-reader"], &sealed);
    assert_eq!(replaced(&fx)["email"], "jane@example.com");
    let mut store = MemoryStore::default();
    let mut p = jwt(Props::default(), "admin", &["pii-reader"]);
    let (mut x, _) = call(&g, "/buyers/1", &[], &mut p, &mut store);
    x.on_response_headers(
        &mut response(&[("content-type", "application/json")]),
        &mut p,
        &mut store,
        false,
    );
    let fx = x.on_response_body(sealed.len(), true, &mut Body::of(&sealed));
    assert_eq!(replaced(&fx)["phone"], "[redacted]");
}

// ---- with the monitoring controls (report mode, limits) ---------------------

/// A request path, how to build its properties, and the event it raises.
type BadRequest = (&'static str, fn() -> Props, EventKind);

/// The access refusals, each with the event it raises.
fn access_bad_requests() -> Vec<BadRequest> {
    vec![
        ("/buyers/1", Props::default, EventKind::PrincipalRequired),
        (
            "/buyers/1",
            || jwt(Props::default(), "Admin", &["support"]),
            EventKind::GenericIdentityRefused,
        ),
        (
            "/buyers/1",
            || jwt(Props::default(), "erin", &["viewer"]),
            EventKind::AccessDenied,
        ),
        (
            "/internal/1",
            || Props::default().with(Property::SourceAddress, "192.0.2.7:4000"),
            EventKind::ClientAddressRefused,
        ),
    ]
}

#[test]
fn access_refusals_in_report_mode_pass_with_the_same_events_flagged() {
    let enforce = keyed_guard(policy());
    let mut report_policy = policy();
    report_policy["mode"] = json!("report");
    let report = keyed_guard(report_policy);
    for (path, props, kind) in access_bad_requests() {
        let (xe, fe) = call(
            &enforce,
            path,
            &[],
            &mut props(),
            &mut MemoryStore::default(),
        );
        let (xr, fr) = call(
            &report,
            path,
            &[],
            &mut props(),
            &mut MemoryStore::default(),
        );
        assert_eq!(event_kinds(&fe), [kind], "enforce {path}");
        assert!(xe.refused() && fe.reply.is_some());
        assert!(
            event_kinds(&fr).starts_with(&[kind]),
            "report {path}: {:?}",
            event_kinds(&fr)
        );
        assert!(fr.events.iter().all(|e| e.report_only), "{path}");
        assert!(
            !xr.refused() && fr.reply.is_none(),
            "{path} passes in report mode"
        );
        assert_eq!(fr.flow, Flow::Continue, "{path}");
    }
}

#[test]
fn a_would_be_lockout_is_reported_and_the_caller_still_passes() {
    let mut p = policy();
    p["mode"] = json!("report");
    let g = keyed_guard(p);
    let mut store = MemoryStore::default();
    let wrong = |now| at(jwt(Props::default(), "erin", &["viewer"]), now);
    let mut kinds = Vec::new();
    for i in 0..5u64 {
        let (x, fx) = call(&g, "/buyers/1", &[], &mut wrong(T0 + i * SEC), &mut store);
        assert!(!x.refused() && fx.reply.is_none(), "attempt {i} passes");
        assert!(fx.events.iter().all(|e| e.report_only), "{:?}", fx.events);
        kinds.extend(event_kinds(&fx));
    }
    // Three denials start the (reported) lockout; the two after it report
    // the lockout that would have refused them.
    assert_eq!(
        kinds
            .iter()
            .filter(|k| **k == EventKind::LockoutStarted)
            .count(),
        1
    );
    assert_eq!(
        kinds
            .iter()
            .filter(|k| **k == EventKind::PrincipalLockedOut)
            .count(),
        2
    );
}

#[test]
fn rate_limits_count_by_principal_not_by_address() {
    let mut p = policy();
    p["routes"][3]["limits"] =
        json!({"requests": {"max": 2, "window_seconds": 60, "throttle": true}});
    let g = keyed_guard(p);
    let mut store = MemoryStore::default();
    // One principal from three addresses: one count.
    let mut statuses = Vec::new();
    for (i, addr) in ["10.0.0.1:1", "10.0.0.2:1", "10.0.0.3:1"]
        .iter()
        .enumerate()
    {
        let props = jwt(
            Props::default().with(Property::SourceAddress, addr),
            "dana",
            &["support"],
        );
        let (_, fx) = call(
            &g,
            "/open/1",
            &[],
            &mut at(props, T0 + i as u64 * SEC),
            &mut store,
        );
        statuses.push(fx.reply.as_ref().map(|r| r.status));
        if let Some(e) = fx.events.iter().find(|e| e.event == EventKind::RateAnomaly) {
            assert_eq!(e.subject.as_deref(), Some(pseudonym("dana").as_str()));
        }
    }
    assert_eq!(statuses, [None, None, Some(429)]);
    // Another principal from the same address has its own count.
    let props = jwt(
        Props::default().with(Property::SourceAddress, "10.0.0.3:1"),
        "carol",
        &["support"],
    );
    let (_, fx) = call(&g, "/open/1", &[], &mut at(props, T0 + 4 * SEC), &mut store);
    assert!(fx.reply.is_none(), "{fx:?}");
}
