//! The access sections of the policy: what loads, and every refusal naming
//! its field.

use serde_json::{json, Value};

use super::*;
use crate::policy::Policy;

fn load(doc: Value) -> Result<Policy, PolicyError> {
    Policy::from_json(doc.to_string().as_bytes())
}

fn full() -> Value {
    json!({
        "version": 1,
        "keys": {"env": "K"},
        "principals": {
            "sources": [
                {"mtls": {"identity": "uri_san"}},
                {"jwt": {"provider": "idp", "payload_key": "jwt_payload", "claim": "sub", "roles_claim": "scope"}},
                {"header": {"name": "x-user", "set_by": "spiffe://mesh/gateway"}}
            ],
            "generic": ["svc-*"],
            "roles": [{"principal": "spiffe://mesh/ns/shop/sa/*", "roles": ["service"]}]
        },
        "client_address": {"source": "x-forwarded-for", "trusted_hops": 1},
        "lockout": {"after": 5, "window_seconds": 60, "duration_seconds": 300},
        "routes": [{
            "name": "buyers",
            "match": {"path": {"prefix": "/buyers/"}},
            "access": {"require_principal": true, "roles": ["support"], "allow_cidrs": ["10.0.0.0/8", "::1/128"], "lockout": true},
            "decrypt": [{"direction": "response", "selectors": ["$.email"], "reveal_to": ["pii-reader"], "otherwise": "redact"}]
        }]
    })
}

fn err_at(doc: Value) -> String {
    load(doc).expect_err("policy should be refused").field
}

#[test]
fn the_agreed_shape_loads() {
    let p = load(full()).unwrap();
    let pr = p.access.principals.as_ref().unwrap();
    assert_eq!(pr.sources.len(), 3);
    assert_eq!(
        p.access.client_address,
        ClientAddressSource::ForwardedFor { trusted_hops: 1 }
    );
    assert_eq!(p.access.lockout.unwrap().after, 5);
    assert_eq!(
        p.access.trusted_header(),
        Some(("x-user", "spiffe://mesh/gateway"))
    );
    let a = p.routes[0].access.as_ref().unwrap();
    assert!(a.require_principal && a.lockout);
    assert_eq!(a.allow_cidrs.as_ref().unwrap().len(), 2);
    let rules = p.routes[0].response_fields.as_ref().unwrap();
    assert_eq!(
        rules.rules[0].reveal,
        Some(Reveal {
            roles: vec!["pii-reader".into()],
            otherwise: Otherwise::Redact
        })
    );
}

#[test]
fn every_mistake_names_its_field() {
    let cases: Vec<(Value, &str)> = vec![
        (json!({"principals": {"sources": []}}), "principals.sources"),
        (
            json!({"principals": {"sources": [{"mtls": {"identity": "cn"}}]}}),
            "principals.sources[0].mtls.identity",
        ),
        (
            json!({"principals": {"sources": [{"jwt": {"provider": "", "payload_key": "p"}}]}}),
            "principals.sources[0].jwt.provider",
        ),
        (
            json!({"principals": {"sources": [{"header": {"name": "X-User", "set_by": "gw"}}]}}),
            "principals.sources[0].header.name",
        ),
        (
            json!({"principals": {"sources": [{"header": {"name": "authorization", "set_by": "gw"}}]}}),
            "principals.sources[0].header.name",
        ),
        (
            json!({"principals": {"sources": [{"header": {"name": "x-a", "set_by": "gw"}}, {"header": {"name": "x-b", "set_by": "gw"}}]}}),
            "principals.sources[1].header",
        ),
        (
            json!({"principals": {"sources": [{"mtls": {"identity": "uri_san"}}], "roles": [{"principal": "a", "roles": []}]}}),
            "principals.roles[0].roles",
        ),
        (
            json!({"principals": {"sources": [{"mtls": {"identity": "uri_san"}}], "roles": [{"principal": "a", "roles": ["ok", "two words"]}]}}),
            "principals.roles[0].roles[1]",
        ),
        (
            json!({"principals": {"sources": [{"mtls": {"identity": "uri_san"}}], "generic": [""]}}),
            "principals.generic[0]",
        ),
        (
            json!({"client_address": {"source": "x-forwarded-for"}}),
            "client_address.trusted_hops",
        ),
        (
            json!({"client_address": {"source": "x-forwarded-for", "trusted_hops": 0}}),
            "client_address.trusted_hops",
        ),
        (
            json!({"client_address": {"source": "socket", "trusted_hops": 1}}),
            "client_address.trusted_hops",
        ),
        (
            json!({"client_address": {"source": "forwarded"}}),
            "client_address.source",
        ),
        (
            json!({"lockout": {"after": 0, "window_seconds": 1, "duration_seconds": 1}}),
            "lockout.after",
        ),
        (
            json!({"lockout": {"after": 1, "window_seconds": 1, "duration_seconds": 0}}),
            "lockout.duration_seconds",
        ),
        (
            json!({"routes": [{"name": "r", "access": {"roles": ["a"]}}]}),
            "routes[0].access.roles",
        ),
        (
            json!({"routes": [{"name": "r", "access": {"require_principal": true}}]}),
            "routes[0].access.require_principal",
        ),
        (
            json!({"routes": [{"name": "r", "access": {"lockout": true}}]}),
            "routes[0].access.lockout",
        ),
        (
            json!({"routes": [{"name": "r", "access": {"allow_cidrs": ["10.0.0.0/8", "10.0.0.1/8"]}}]}),
            "routes[0].access.allow_cidrs[1]",
        ),
        (
            json!({"routes": [{"name": "r", "access": {"allow_cidrs": []}}]}),
            "routes[0].access.allow_cidrs",
        ),
        (
            json!({"routes": [{"name": "r", "access": {"rolez": []}}]}),
            "routes[0].access.rolez",
        ),
        (
            json!({"keys": {"env": "K"}, "routes": [{"name": "r", "decrypt": [{"direction": "response", "selectors": ["$.a"], "reveal_to": ["x"]}]}]}),
            "routes[0].decrypt",
        ),
        (
            json!({"keys": {"env": "K"}, "routes": [{"name": "r", "decrypt": [{"direction": "response", "selectors": ["$.a"], "otherwise": "redact"}]}]}),
            "routes[0].decrypt[0].otherwise",
        ),
    ];
    for (mut doc, field) in cases {
        doc["version"] = json!(1);
        let got = err_at(doc.clone());
        assert!(
            got == field || got.starts_with(&format!("{field}.")) || got.starts_with(field),
            "{doc}: expected field {field}, got {got}"
        );
    }
    let mut doc = full();
    doc["principals"]["sources"][1]["jwt"]["claims"] = json!("x");
    assert!(err_at(doc).starts_with("principals.sources[1]"));
    let mut doc = full();
    doc["routes"][0]["decrypt"][0]["otherwise"] = json!("hide");
    assert_eq!(err_at(doc), "routes[0].decrypt[0].otherwise");
    let mut doc = full();
    doc["routes"][0]["decrypt"][0]["reveal_to"] = json!([]);
    assert_eq!(err_at(doc), "routes[0].decrypt[0].reveal_to");
}

#[test]
fn generic_identities_in_any_spelling() {
    let p = load(full()).unwrap();
    let pr = p.access.principals.as_ref().unwrap();
    for g in [
        "root",
        "ROOT",
        "Admin",
        " administrator ",
        "guest",
        "Anonymous",
        "test",
        "user",
        "default",
        "admin@example.com",
        "CN=admin,O=Example",
        "O=Example, cn=Root",
        "spiffe://cluster.local/ns/shop/sa/default",
        "SPIFFE://cluster.local/ns/shop/SA/Default",
        "system:serviceaccount:shop:default",
        "svc-orders",
        "SVC-batch",
    ] {
        assert!(pr.is_generic(g), "{g} should be generic");
    }
    for ok in [
        "alice",
        "alice@example.com",
        "CN=orders.shop.svc,O=Example",
        "spiffe://cluster.local/ns/shop/sa/orders",
        "administrator2",
        "rooted",
        "test-runner-7",
    ] {
        assert!(!pr.is_generic(ok), "{ok} should not be generic");
    }
}

#[test]
fn roles_from_the_map_are_exact_and_case_sensitive() {
    let p = load(full()).unwrap();
    let pr = p.access.principals.as_ref().unwrap();
    let mut roles = Vec::new();
    pr.grant_roles("spiffe://mesh/ns/shop/sa/orders", &mut roles);
    assert_eq!(roles, vec!["service"]);
    let mut roles = Vec::new();
    pr.grant_roles("SPIFFE://mesh/ns/shop/sa/orders", &mut roles);
    assert!(roles.is_empty(), "a case variant gets no grant");
}

#[test]
fn refusals_have_documented_statuses_and_headers() {
    assert_eq!(AccessRefusal::PrincipalRequired.status(), 401);
    let r = AccessRefusal::PrincipalRequired.reply(None);
    assert_eq!(r.code, "principal_required");
    assert!(r
        .extra_headers
        .contains(&("www-authenticate", "Bearer".to_owned())));
    let r = AccessRefusal::LockedOut.reply(Some(7));
    assert_eq!((r.status, r.code), (403, "principal_locked_out"));
    assert!(r.extra_headers.contains(&("retry-after", "7".to_owned())));
    for (r, code) in [
        (AccessRefusal::GenericIdentity, "generic_identity_refused"),
        (AccessRefusal::AccessDenied, "access_denied"),
        (AccessRefusal::ClientAddress, "client_address_refused"),
    ] {
        assert_eq!((r.status(), r.code()), (403, code));
    }
}
