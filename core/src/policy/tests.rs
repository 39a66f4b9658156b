use super::*;
use crate::{RequestDecision, RequestFacts};

fn facts<'a>(host: &'a str, path: &'a str, method: &'a str) -> RequestFacts<'a> {
    RequestFacts {
        host,
        path,
        method,
        route_name: None,
    }
}

fn err(doc: &str) -> PolicyError {
    Policy::from_json(doc.as_bytes()).expect_err("policy should be refused")
}

#[test]
fn minimal_policy_loads() {
    let p = Policy::from_json(br#"{"version":1}"#).unwrap();
    assert!(p.routes.is_empty());
    assert!(matches!(
        p.decide_request(&facts("a", "/", "GET")),
        RequestDecision::Unprotected
    ));
}

#[test]
fn unknown_top_level_field_is_named() {
    let e = err(r#"{"version":1,"rotes":[]}"#);
    assert_eq!(e.field, "rotes");
    assert!(e.problem.contains("unknown field `rotes`"), "{e}");
}

#[test]
fn unknown_nested_field_is_named_with_its_path() {
    let e =
        err(r#"{"version":1,"routes":[{"name":"a","match":{"path":{"prefix":"/"},"hots":"x"}}]}"#);
    assert_eq!(e.field, "routes[0].match.hots");
    assert!(e.to_string().contains("routes[0].match.hots"));
}

#[test]
fn wrong_version_is_refused() {
    let e = err(r#"{"version":2}"#);
    assert_eq!(e.field, "version");
    assert!(e.problem.contains("unsupported version 2"));
}

#[test]
fn missing_version_is_refused() {
    let e = err(r#"{"routes":[]}"#);
    assert!(e.problem.contains("missing field `version`"), "{e}");
}

#[test]
fn bad_regex_is_named() {
    let e = err(r#"{"version":1,"routes":[{"name":"a","match":{"path":{"regex":"/orders/(["}}}]}"#);
    assert_eq!(e.field, "routes[0].match.path.regex");
    assert!(e.problem.starts_with("bad regex"));
}

#[test]
fn wrong_type_is_named() {
    let e = err(r#"{"version":1,"routes":[{"name":"a","kill_switch":"yes"}]}"#);
    assert_eq!(e.field, "routes[0].kill_switch");
}

#[test]
fn duplicate_route_names_are_refused() {
    let e = err(r#"{"version":1,"routes":[{"name":"a"},{"name":"a"}]}"#);
    assert_eq!(e.field, "routes[1].name");
}

#[test]
fn bad_values_are_refused() {
    assert_eq!(
        err(r#"{"version":1,"routes":[{"name":"a","match":{"path":{"prefix":"orders"}}}]}"#).field,
        "routes[0].match.path"
    );
    assert_eq!(
        err(r#"{"version":1,"routes":[{"name":"a","match":{"host":"a b"}}]}"#).field,
        "routes[0].match.host"
    );
    assert_eq!(
        err(r#"{"version":1,"routes":[{"name":"a","match":{"methods":[]}}]}"#).field,
        "routes[0].match.methods"
    );
    assert_eq!(
        err(r#"{"version":1,"routes":[{"name":"a","match":{"methods":["GET","G T"]}}]}"#).field,
        "routes[0].match.methods[1]"
    );
    assert_eq!(
        err(r#"{"version":1,"routes":[{"name":""}]}"#).field,
        "routes[0].name"
    );
    assert_eq!(err("not json").field, ".");
}

#[test]
fn path_matchers() {
    let p = Policy::from_json(
        br#"{"version":1,"routes":[
            {"name":"exact","match":{"path":{"exact":"/a"}}},
            {"name":"regex","match":{"path":{"regex":"/orders/v0/orders/[^/]+/address"}}},
            {"name":"prefix","match":{"path":{"prefix":"/p/"}}}]}"#,
    )
    .unwrap();
    let name = |path| {
        p.match_route(&facts("h", path, "GET"))
            .map(|r| r.name.as_str())
    };
    assert_eq!(name("/a"), Some("exact"));
    assert_eq!(
        name("/a?x=1"),
        Some("exact"),
        "query string is not part of the path"
    );
    assert_eq!(name("/ab"), None);
    assert_eq!(name("/orders/v0/orders/123-45/address"), Some("regex"));
    assert_eq!(
        name("/orders/v0/orders/123-45/address/extra"),
        None,
        "regex must match the whole path"
    );
    assert_eq!(name("/p/x"), Some("prefix"));
    assert_eq!(name("/p"), None);
}

#[test]
fn host_method_and_route_name_all_must_hold() {
    let p = Policy::from_json(
        br#"{"version":1,"routes":[{"name":"r","match":{"host":"*.Example.com","methods":["post"],"route_name":"orders"}}]}"#,
    )
    .unwrap();
    let mut f = RequestFacts {
        host: "api.example.COM:8443",
        path: "/",
        method: "POST",
        route_name: Some("orders"),
    };
    assert!(p.match_route(&f).is_some());
    f.method = "GET";
    assert!(p.match_route(&f).is_none());
    f.method = "POST";
    f.route_name = Some("other");
    assert!(p.match_route(&f).is_none());
    f.route_name = Some("orders");
    f.host = "example.com";
    assert!(p.match_route(&f).is_none(), "wildcard needs a subdomain");
}

#[test]
fn first_matching_route_wins() {
    let p = Policy::from_json(
        br#"{"version":1,"routes":[{"name":"off","match":{"path":{"prefix":"/x"}},"kill_switch":true},{"name":"all"}]}"#,
    )
    .unwrap();
    match p.decide_request(&facts("h", "/x/1", "GET")) {
        RequestDecision::Refuse {
            route,
            reply,
            event,
        } => {
            assert_eq!(route.name, "off");
            assert_eq!(reply.status, 503);
            let body: serde_json::Value = serde_json::from_str(&reply.body).unwrap();
            assert_eq!(body["error"], "route_disabled");
            assert_eq!(event.event, crate::EventKind::KillSwitchRefusal);
            assert!(event.to_log_line().starts_with("dpp_event {"));
        }
        other => panic!("expected refusal, got {other:?}"),
    }
    assert!(
        matches!(p.decide_request(&facts("h", "/y", "GET")), RequestDecision::Proceed { route } if route.name == "all")
    );
}

#[test]
fn no_store_sets_both_headers() {
    let p =
        Policy::from_json(br#"{"version":1,"routes":[{"name":"a","no_store":true},{"name":"b"}]}"#)
            .unwrap();
    assert_eq!(
        p.routes[0].response_header_edits().set,
        vec![("cache-control", "no-store"), ("pragma", "no-cache")]
    );
    assert!(p.routes[1].response_header_edits().set.is_empty());
}
