//! dpp-guard's behaviour, tested on the compiled filter
//! (target/wasm32-wasip1/release/dpp_guard.wasm, built by `make build`)
//! running in the harness as Envoy would run it.

mod common;

use common::{dpp_guard, workspace_root};
use dpp_core::events::SecurityEvent;
use dpp_core::wire::{upstream_metrics, ROOT_ID, UPSTREAM_GUARD_ROOT_ID, VM_ID};
use harness::scenario;
use harness::{LogLevel, Node, Vm, VmConfig};
use serde_json::json;

fn guard(policy: serde_json::Value) -> Vm {
    let config = VmConfig::new()
        .plugin_config(policy.to_string())
        .root_id(ROOT_ID)
        .vm_id(VM_ID)
        .log_level(LogLevel::Info)
        .property("xds.route_name", "service")
        // The shipped listener terminates TLS.
        .stream_property("connection.tls_version", "TLSv1.3");
    Vm::start(dpp_guard(), &Node::new(), config).expect("dpp_guard starts")
}

fn policy() -> serde_json::Value {
    json!({
        "version": 1,
        "routes": [
            {"name": "legacy-mws", "match": {"path": {"prefix": "/mws/"}}, "kill_switch": true},
            {"name": "orders", "match": {"path": {"prefix": "/orders/"}}, "no_store": true}
        ]
    })
}

fn get(vm: &mut Vm, method: &str, path: &str) -> harness::StreamId {
    let id = vm.open_stream().unwrap();
    vm.request_headers(
        id,
        &[
            (":method", method),
            (":path", path),
            (":authority", "api.example.com"),
            (":scheme", "https"),
        ],
        true,
    )
    .unwrap();
    id
}

#[test]
fn every_scenario_file_passes_in_the_harness() {
    let dir = workspace_root().join("tests/scenarios");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    assert!(
        files.len() >= 8,
        "expected at least 8 scenarios in {}",
        dir.display()
    );
    let mut report = String::new();
    let mut ok = true;
    for f in &files {
        let s = scenario::load(f).unwrap();
        let obs = scenario::run(dpp_guard(), &s).unwrap();
        ok &= scenario::render(&s, &scenario::check(&s, &obs), &mut report);
    }
    assert!(ok, "{report}");
}

#[test]
fn the_readme_scenario_passes() {
    let readme = std::fs::read_to_string(workspace_root().join("harness/README.md")).unwrap();
    let start = readme.find("```yaml\n").expect("README has a YAML example") + 8;
    let len = readme[start..].find("```").unwrap();
    let s: scenario::Scenario = serde_norway::from_str(&readme[start..start + len]).unwrap();
    let obs = scenario::run(dpp_guard(), &s).unwrap();
    let mut out = String::new();
    assert!(
        scenario::render(&s, &scenario::check(&s, &obs), &mut out),
        "{out}"
    );
}

#[test]
fn a_wrong_expectation_fails_with_a_readable_diff() {
    let s: scenario::Scenario = serde_norway::from_str(
        r#"
name: deliberately wrong
plugin: {config: {version: 1, routes: [{name: k, match: {path: {prefix: /k/}}, kill_switch: true}]}}
streams:
  - name: expects the wrong status
    request: {path: /k/1}
    expect: {status: 200, headers: {pragma: no-cache}, json: {ok: true}, upstream: {path: /k/1}}
"#,
    )
    .unwrap();
    let obs = scenario::run(dpp_guard(), &s).unwrap();
    let mut out = String::new();
    assert!(!scenario::render(&s, &scenario::check(&s, &obs), &mut out));
    for needle in [
        "FAIL deliberately wrong",
        "status: expected 200, got Some(503)",
        "response header pragma: expected \"no-cache\", got None",
        "response body (JSON):",
        "upstream: expected a request, the service received nothing",
    ] {
        assert!(out.contains(needle), "missing {needle:?} in:\n{out}");
    }
}

#[test]
fn kill_switch_event_names_route_and_method_but_no_request_data() {
    let mut vm = guard(policy());
    let id = get(&mut vm, "POST", "/mws/Orders?SellerId=A1&Action=ListOrders");
    let s = vm.stream(id).unwrap();
    assert_eq!(s.status(), Some(503));
    assert_eq!(s.upstream().headers, None);
    let refusals: Vec<&str> = vm
        .logs_at(LogLevel::Warn)
        .into_iter()
        .filter(|l| l.contains("kill_switch_refusal"))
        .collect();
    assert_eq!(refusals.len(), 1, "{:#?}", vm.logs());
    let event: serde_json::Value =
        serde_json::from_str(refusals[0].strip_prefix(SecurityEvent::LOG_PREFIX).unwrap()).unwrap();
    assert_eq!(event["event"], "kill_switch_refusal");
    assert_eq!(event["route"], "legacy-mws");
    assert_eq!(event["method"], "POST");
    assert!(!vm.logs().iter().any(|l| l.message.contains("SellerId")));
}

#[test]
fn no_store_overrides_the_service_headers() {
    let mut vm = guard(policy());
    let id = get(&mut vm, "GET", "/orders/1");
    vm.response_headers(
        id,
        &[(":status", "200"), ("cache-control", "public, max-age=600")],
        true,
    )
    .unwrap();
    let s = vm.stream(id).unwrap();
    assert_eq!(s.downstream().header("cache-control"), Some("no-store"));
    assert_eq!(s.downstream().header("pragma"), Some("no-cache"));
}

#[test]
fn an_invalid_policy_is_refused_with_one_line_naming_the_field() {
    let mut vm = guard(json!({"version": 1, "routes": [{"name": "a", "kill_swich": true}]}));
    assert!(!vm.configured());
    let critical = vm.logs_at(LogLevel::Critical);
    assert!(
        critical
            .iter()
            .any(|l| l.contains("routes[0].kill_swich") && l.contains("unknown field")),
        "{critical:?}"
    );
    let id = get(&mut vm, "GET", "/anything");
    assert_eq!(vm.stream(id).unwrap().status(), Some(500));
}

#[test]
fn the_filter_never_traps_on_odd_requests() {
    let mut vm = guard(policy());
    // No pseudo headers at all, odd methods, long paths: fail nothing.
    let id = vm.open_stream().unwrap();
    vm.request_headers(id, &[], true).unwrap();
    let long = format!("/orders/{}", "a".repeat(100_000));
    let id2 = get(&mut vm, "get", &long);
    let id3 = get(&mut vm, "PÖST", "/mws/\u{0}");
    assert!(vm.failure().is_none(), "{:?}", vm.failure());
    // No :path: nothing the routes can be decided on (requests.non_normal_path
    // refuses a path not in origin form), answered, not trapped.
    assert_eq!(vm.stream(id).unwrap().status(), Some(400));
    assert!(vm.stream(id2).unwrap().upstream().end);
    // A NUL is no path character: refused before any route is matched.
    assert_eq!(vm.stream(id3).unwrap().status(), Some(400));
}

#[test]
fn a_protected_route_refuses_a_plaintext_downstream() {
    let config = VmConfig::new()
        .plugin_config(policy().to_string())
        .root_id(ROOT_ID)
        .log_level(LogLevel::Info);
    // No connection.tls_version: the request came over plaintext.
    let mut vm = Vm::start(dpp_guard(), &Node::new(), config).unwrap();
    let id = get(&mut vm, "GET", "/orders/1");
    let s = vm.stream(id).unwrap();
    assert_eq!(s.status(), Some(403));
    assert_eq!(s.upstream().headers, None);
    let body: serde_json::Value = serde_json::from_slice(&s.downstream().body).unwrap();
    assert_eq!(body["error"], "downstream_tls_required");
    assert!(
        vm.logged("downstream_plaintext_refused"),
        "{:#?}",
        vm.logs()
    );
    // An unprotected path is not the filter's business.
    let id = get(&mut vm, "GET", "/catalog/1");
    assert!(vm.stream(id).unwrap().upstream().end);
}

fn upstream_guard(node: &Node) -> Vm {
    let config = VmConfig::new()
        .plugin_config(policy().to_string())
        .root_id(UPSTREAM_GUARD_ROOT_ID)
        .vm_id(VM_ID)
        .log_level(LogLevel::Info)
        .property("xds.cluster_name", "service");
    Vm::start(dpp_guard(), node, config).expect("upstream guard starts")
}

#[test]
fn upstream_guard_waits_for_a_new_connection_then_lets_tls_through() {
    let node = Node::new();
    let mut vm = upstream_guard(&node);
    let id = get(&mut vm, "GET", "/orders/1");
    // No connection yet: the request is held, the root polls on ticks.
    assert_eq!(vm.stream(id).unwrap().upstream().headers, None);
    assert_eq!(vm.tick_period_ms(), 1);
    vm.advance(std::time::Duration::from_millis(1)).unwrap();
    assert_eq!(vm.stream(id).unwrap().upstream().headers, None);
    vm.set_stream_property(id, "upstream.local_address", "127.0.0.1:40000")
        .unwrap();
    vm.set_stream_property(id, "upstream.tls_version", "TLSv1.3")
        .unwrap();
    vm.advance(std::time::Duration::from_millis(1)).unwrap();
    assert!(
        vm.stream(id).unwrap().upstream().end,
        "resumed once TLS is seen"
    );
    assert_eq!(node.counter(upstream_metrics::ALLOWED_NEW), Some(1));
}

#[test]
fn upstream_guard_refuses_a_pooled_plaintext_connection_before_any_byte() {
    let node = Node::new();
    let mut vm = upstream_guard(&node);
    let id = vm.open_stream().unwrap();
    vm.set_stream_property(id, "upstream.local_address", "127.0.0.1:40000")
        .unwrap();
    vm.request_headers(
        id,
        &[
            (":method", "POST"),
            (":path", "/orders/1"),
            (":authority", "a"),
        ],
        false,
    )
    .unwrap();
    vm.request_body(id, b"{\"pii\":1}", true).unwrap();
    let s = vm.stream(id).unwrap();
    assert_eq!(
        s.upstream().headers,
        None,
        "nothing reaches a plaintext upstream"
    );
    assert!(s.status().is_some_and(|c| c >= 500), "{:?}", s.status());
    assert_eq!(node.counter(upstream_metrics::REFUSED_POOLED), Some(1));
}
