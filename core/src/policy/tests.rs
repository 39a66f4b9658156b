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

/// The route a request matches, decided as the filter decides it.
fn matched<'p>(p: &'p Policy, f: &RequestFacts<'_>) -> Option<&'p Route> {
    match p.decide_request(f) {
        RequestDecision::Proceed { route, .. } => Some(route),
        RequestDecision::Refuse { route, .. } => route,
        RequestDecision::Unprotected { .. } => None,
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
        RequestDecision::Unprotected { .. }
    ));
}

#[test]
fn text_after_the_document_is_refused() {
    // Found by fuzzing (fuzz target `policy`): serde_json stopped after the
    // first value, so a brace closed too early loaded a policy without the
    // routes that followed it, protecting nothing, and said nothing.
    let early_close = r#"{"version": 1}, "routes": [{"name": "orders", "kill_switch": true}]}"#;
    let e = err(early_close);
    assert_eq!(e.field, ".");
    assert!(e.problem.contains("trailing characters"), "{e}");
    assert!(e.problem.contains("exactly one JSON object"), "{e}");
    err(r#"{"version":1} {"version":1}"#);
    err(r#"{"version":1}x"#);
    // Surrounding white space is not content.
    Policy::from_json(b" \n{\"version\":1}\n\t ").unwrap();
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
        "routes[0].match.path.prefix"
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
    let name = |path| matched(&p, &facts("h", path, "GET")).map(|r| r.name.as_str());
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
    assert!(matched(&p, &f).is_some());
    f.method = "GET";
    assert!(matched(&p, &f).is_none());
    f.method = "POST";
    f.route_name = Some("other");
    assert!(matched(&p, &f).is_none());
    f.route_name = Some("orders");
    f.host = "example.com";
    assert!(matched(&p, &f).is_none(), "wildcard needs a subdomain");
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
            assert_eq!(route.unwrap().name, "off");
            assert_eq!(reply.status, 503);
            let body: serde_json::Value = serde_json::from_str(&reply.body).unwrap();
            assert_eq!(body["error"], "route_disabled");
            assert_eq!(event.event, crate::EventKind::KillSwitchRefusal);
            assert!(event.to_log_line().starts_with("dpp_event {"));
        }
        other => panic!("expected refusal, got {other:?}"),
    }
    assert!(
        matches!(p.decide_request(&facts("h", "/y", "GET")), RequestDecision::Proceed { route, .. } if route.name == "all")
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

mod fields {
    use crate::crypto::Mode;
    use crate::policy::{Direction, FieldAction, KeySource, NonJson, Policy};

    fn err(doc: &str) -> (String, String) {
        let e = Policy::from_json(doc.as_bytes()).unwrap_err();
        (e.field, e.problem)
    }

    #[test]
    fn encryption_sections_compile() {
        let p = Policy::from_json(
            br#"{"version":1,"keys":{"env":"DPP_GUARD_KEYS"},"routes":[{"name":"orders",
                "encrypt":[{"direction":"request","preset":"sp-api-orders","mode":"deterministic","context":"t1","blind_index":true},
                           {"direction":"request","selectors":["$..Phone"]}],
                "decrypt":[{"direction":"response","selectors":["$.a[*].b"],"context":"t1"}],
                "body":{"max_bytes":4096,"non_json":"pass","content_encoding":"reject"}}]}"#,
        )
        .unwrap();
        let r = &p.routes[0];
        let req = r.fields(Direction::Request).unwrap();
        assert_eq!(req.action, FieldAction::Encrypt);
        assert_eq!(req.rules.len(), 2);
        assert_eq!(req.rules[0].mode, Mode::Deterministic);
        assert!(req.rules[0].blind_index);
        assert_eq!(req.rules[1].mode, Mode::Random);
        assert_eq!(
            r.fields(Direction::Response).unwrap().action,
            FieldAction::Decrypt
        );
        assert_eq!(r.body.max_bytes, 4096);
        assert_eq!(r.body.non_json, NonJson::Pass);
        assert!(matches!(&p.keys, Some(KeySource::Env(n)) if n == "DPP_GUARD_KEYS"));
    }

    #[test]
    fn every_mistake_names_its_field() {
        let route = |r: &str| {
            format!(r#"{{"version":1,"keys":{{"env":"K"}},"routes":[{{"name":"o",{r}}}]}}"#)
        };
        let cases = [
            (r#"{"version":1,"routes":[{"name":"o","encrypt":[{"direction":"request","preset":"sp-api-orders"}]}]}"#.to_string(), "keys"),
            (route(r#""encrypt":[{"direction":"up","preset":"sp-api-orders"}]"#), "routes[0].encrypt[0].direction"),
            (route(r#""encrypt":[{"direction":"request","preset":"nope"}]"#), "routes[0].encrypt[0].preset"),
            (route(r#""encrypt":[{"direction":"request"}]"#), "routes[0].encrypt[0].selectors"),
            (route(r#""encrypt":[{"direction":"request","selectors":["$.ok","a.b"]}]"#), "routes[0].encrypt[0].selectors[1]"),
            (route(r#""encrypt":[{"direction":"request","selectors":["$.a"],"mode":"ecb"}]"#), "routes[0].encrypt[0].mode"),
            (route(r#""encrypt":[{"direction":"request","selectors":["$.a"]}],"decrypt":[{"direction":"request","selectors":["$.b"]}]"#), "routes[0].decrypt[0].direction"),
            (route(r#""decrypt":[{"direction":"request","selectors":["$.b"],"mode":"random"}]"#), "routes[0].decrypt[0].mode"),
            (route(r#""encrypt":[{"direction":"request","selectors":["$.a"]}],"body":{"max_bytes":0}"#), "routes[0].body.max_bytes"),
            (route(r#""encrypt":[{"direction":"request","selectors":["$.a"]}],"body":{"non_json":"maybe"}"#), "routes[0].body.non_json"),
            (route(r#""encrypt":[{"direction":"request","selectors":["$.a"]}],"body":{"content_encoding":"pass"}"#), "routes[0].body.content_encoding"),
            (route(r#""body":{"max_bytes":10}"#), "routes[0].body"),
            (r#"{"version":1,"keys":{"inline":"k1=AAAA"}}"#.to_string(), "keys.inline"),
            (r#"{"version":1,"keys":{"env":"A B"}}"#.to_string(), "keys.env"),
            (r#"{"version":1,"keys":{"env":"A","inline":"x"}}"#.to_string(), "keys"),
            (r#"{"version":1,"keys":{"env":"A","extra":1}}"#.to_string(), "keys.extra"),
        ];
        for (doc, field) in cases {
            let (f, problem) = err(&doc);
            assert_eq!(f, field, "{doc}: {problem}");
        }
    }

    #[test]
    fn keyring_loads_from_the_named_variable_without_echoing_it() {
        let p = Policy::from_json(br#"{"version":1,"keys":{"env":"DPP_KEYS"}}"#).unwrap();
        let keys = p.keys.as_ref().unwrap();
        let ok = "k1=AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8";
        let ring = keys
            .load(|n| (n == "DPP_KEYS").then(|| ok.to_string()))
            .unwrap();
        assert_eq!(ring.primary().id().as_str(), "k1");
        let missing = keys.load(|_| None).unwrap_err();
        assert_eq!(missing.field, "keys.env");
        assert!(missing.problem.contains("DPP_KEYS"));
        let bad = keys
            .load(|_| Some("k1=c2VjcmV0LWtleS10ZXh0".into()))
            .unwrap_err();
        assert_eq!(bad.field, "keys.env");
        assert!(!bad.problem.contains("c2VjcmV0"));
        let inline = Policy::from_json(
            format!(r#"{{"version":1,"keys":{{"inline":"{ok}","allow_inline_keys_for_testing_only":true}}}}"#).as_bytes(),
        )
        .unwrap();
        let src = inline.keys.as_ref().unwrap();
        assert!(src.is_inline());
        assert!(src.load(|_| None).is_ok());
        assert!(!format!("{inline:?}").contains("AAEC"));
    }
}

#[test]
fn fields_the_policy_encrypts_are_pii_keys_in_logs() {
    // `keys.env` only names the variable; the keyring is read at plugin start.
    let p = Policy::from_json(
        br#"{"version":1,"keys":{"env":"DPP_GUARD_KEYS"},
            "routes":[{"name":"r","encrypt":[{"direction":"request","selectors":["$.payload.LoyaltyToken","$..*"]}],
                       "decrypt":[{"direction":"response","selectors":["$..MemberRef"]}]}]}"#,
    )
    .unwrap();
    let leaves: Vec<&str> = p.selector_leaf_names().into_iter().collect();
    assert_eq!(
        leaves,
        vec!["LoyaltyToken", "MemberRef"],
        "wildcard endings have no name"
    );
    let scrubber = p.logging.scrubber(None, p.selector_leaf_names());
    let url = scrubber.url("/orders?LoyaltyToken=LT-88213&MemberRef=M-1&page=2");
    assert!(!url.contains("LT-88213") && !url.contains("M-1"), "{url}");
    assert!(url.contains("page=2"), "{url}");
}

const ORDERS: &str = r#"{"version":1,"routes":[{"name":"orders","match":{"path":{"prefix":"/orders/"},"methods":["GET"]}}]}"#;

fn policy(doc: &str) -> Policy {
    Policy::from_json(doc.as_bytes()).unwrap()
}

/// The status and error code of a refusal, or the route and edits otherwise.
fn outcome(p: &Policy, method: &str, path: &str) -> String {
    match p.decide_request(&facts("h", path, method)) {
        RequestDecision::Refuse { reply, event, .. } => {
            assert!(
                !event.to_log_line().contains(path),
                "events never carry the path"
            );
            format!("{} {}", reply.status, reply.code)
        }
        RequestDecision::Proceed { route, edits } => {
            format!("route {} {:?}", route.name, edits.set)
        }
        RequestDecision::Unprotected { edits } => format!("unprotected {:?}", edits.set),
    }
}

#[test]
fn paths_and_methods_match_case_insensitively_by_default() {
    let p = policy(ORDERS);
    for path in [
        "/orders/v0/orders",
        "/Orders/v0/orders",
        "/ORDERS/V0/ORDERS?x=1",
    ] {
        assert_eq!(outcome(&p, "GET", path), "route orders []", "{path}");
    }
    assert_eq!(outcome(&p, "get", "/orders/1"), "route orders []");
    assert_eq!(outcome(&p, "gEt", "/orders/1"), "route orders []");
    assert_eq!(outcome(&p, "POST", "/orders/1"), "unprotected []");
    // Exact and regex too.
    let p = policy(
        r#"{"version":1,"routes":[{"name":"e","match":{"path":{"exact":"/a/B"}}},{"name":"r","match":{"path":{"regex":"/x/[a-z]+"}}}]}"#,
    );
    assert_eq!(outcome(&p, "GET", "/A/b"), "route e []");
    assert_eq!(outcome(&p, "GET", "/X/ABC"), "route r []");
}

#[test]
fn a_route_may_opt_into_case_sensitive_paths() {
    let p = policy(
        r#"{"version":1,"routes":[{"name":"cs","match":{"path":{"prefix":"/Orders/"},"case_sensitive":true}},{"name":"rx","match":{"path":{"regex":"/x/[a-z]+"},"case_sensitive":true}}]}"#,
    );
    assert_eq!(outcome(&p, "GET", "/Orders/1"), "route cs []");
    assert_eq!(outcome(&p, "GET", "/orders/1"), "unprotected []");
    assert_eq!(outcome(&p, "GET", "/x/abc"), "route rx []");
    assert_eq!(outcome(&p, "GET", "/x/ABC"), "unprotected []");
}

#[test]
fn a_fully_qualified_host_matches_its_route() {
    let p = policy(r#"{"version":1,"routes":[{"name":"h","match":{"host":"api.example.com"}}]}"#);
    let f = RequestFacts {
        host: "api.example.com.:443",
        path: "/",
        method: "GET",
        route_name: None,
    };
    assert_eq!(matched(&p, &f).map(|r| r.name.as_str()), Some("h"));
}

#[test]
fn every_spelling_from_the_relay_is_refused_or_matched() {
    let p = policy(ORDERS);
    for path in [
        "//orders/v0/orders",
        "/x/../orders/v0/orders",
        "/./orders/v0/orders",
        "/%6frders/v0/orders",
        "/orders/v0/%2e%2e/v0/orders",
    ] {
        assert_eq!(outcome(&p, "GET", path), "400 ambiguous_path", "{path}");
    }
    for path in [
        "/orders%2fv0/orders",
        "/orders%2Fv0/orders",
        "/orders%5cv0",
        "/orders\\v0/orders",
        "/orders;a=b/v0/orders",
        "/orders./v0/orders",
        "/orders/%252e%252e/x",
        "/orderſ/v0/orders",
        "*",
    ] {
        assert_eq!(outcome(&p, "GET", path), "400 ambiguous_path", "{path}");
    }
    match p.decide_request(&facts("h", "/orders%2fv0", "GET")) {
        RequestDecision::Refuse { event, .. } => {
            assert_eq!(event.event, crate::EventKind::AmbiguousPath);
            assert_eq!(event.detail.as_deref(), Some("encoded_slash"));
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn normalize_mode_decides_on_the_normal_form_and_rewrites_the_path() {
    let p = policy(
        r#"{"version":1,"requests":{"non_normal_path":"normalize"},"routes":[{"name":"orders","match":{"path":{"prefix":"/orders/"}}}]}"#,
    );
    assert_eq!(
        outcome(&p, "GET", "//orders/v0/x/../orders?a=/../b"),
        r#"route orders [(":path", "/orders/v0/orders?a=/../b")]"#
    );
    assert_eq!(
        outcome(&p, "GET", "/%6Frders/1"),
        r#"route orders [(":path", "/orders/1")]"#
    );
    assert_eq!(
        outcome(&p, "GET", "/a/./b"),
        r#"unprotected [(":path", "/a/b")]"#,
        "the service reads the normal form on unprotected routes too"
    );
    assert_eq!(outcome(&p, "GET", "/orders/1"), "route orders []");
    assert_eq!(
        outcome(&p, "GET", "/orders/%3a"),
        "route orders []",
        "hex case alone is no rewrite"
    );
    // What has no single meaning is refused in this mode too.
    assert_eq!(outcome(&p, "GET", "/orders%2fv0"), "400 ambiguous_path");
    assert_eq!(outcome(&p, "GET", "/orders;x/v0"), "400 ambiguous_path");
}

#[test]
fn unmatched_requests_are_allowed_or_denied_as_the_policy_says() {
    let p = policy(ORDERS);
    assert_eq!(p.requests.unmatched, Unmatched::Allow);
    assert_eq!(outcome(&p, "GET", "/health"), "unprotected []");
    let p = policy(
        r#"{"version":1,"requests":{"unmatched":"deny"},"routes":[{"name":"orders","match":{"path":{"prefix":"/orders/"}}}]}"#,
    );
    assert_eq!(outcome(&p, "GET", "/health"), "404 no_route");
    assert_eq!(outcome(&p, "GET", "/orders/1"), "route orders []");
    match p.decide_request(&facts("h", "/health", "GET")) {
        RequestDecision::Refuse {
            route,
            event,
            reply,
        } => {
            assert!(route.is_none());
            assert_eq!(event.event, crate::EventKind::UnmatchedRequest);
            let body: serde_json::Value = serde_json::from_str(&reply.body).unwrap();
            assert_eq!(body["error"], "no_route");
        }
        other => panic!("{other:?}"),
    }
    // Deny with no routes at all denies everything.
    let p = policy(r#"{"version":1,"requests":{"unmatched":"deny"}}"#);
    assert_eq!(outcome(&p, "GET", "/"), "404 no_route");
}

#[test]
fn a_policy_without_routes_leaves_paths_alone() {
    let p = policy(r#"{"version":1}"#);
    assert_eq!(outcome(&p, "GET", "//a/../b%2f"), "unprotected []");
}

#[test]
fn policy_paths_must_be_in_normal_form() {
    for (prefix, want) in [
        ("/orders//v0", "write \"/orders/v0\""),
        ("/a/../orders", "write \"/orders\""),
        ("/%6frders", "write \"/orders\""),
        ("/orders%2f", "encoded_slash"),
        ("/orders;v", "path_parameter"),
    ] {
        let e = err(&format!(
            r#"{{"version":1,"routes":[{{"name":"a","match":{{"path":{{"prefix":"{prefix}"}}}}}}]}}"#
        ));
        assert_eq!(e.field, "routes[0].match.path.prefix");
        assert!(e.problem.contains(want), "{prefix}: {e}");
    }
    let e = err(r#"{"version":1,"routes":[{"name":"a","match":{"path":{"exact":"/a/./b"}}}]}"#);
    assert_eq!(e.field, "routes[0].match.path.exact");
}

#[test]
fn requests_section_refuses_unknown_values() {
    let e = err(r#"{"version":1,"requests":{"unmatched":"drop"}}"#);
    assert_eq!(e.field, "requests.unmatched");
    let e = err(r#"{"version":1,"requests":{"non_normal_path":"fix"}}"#);
    assert_eq!(e.field, "requests.non_normal_path");
    let e = err(r#"{"version":1,"requests":{"unmached":"deny"}}"#);
    assert_eq!(e.field, "requests.unmached");
}
