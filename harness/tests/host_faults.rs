//! Host calls that fail on the real dpp_guard.wasm: a header map Envoy no
//! longer holds, a body it cannot hand over, a property it cannot read, a
//! reply it cannot send. Each is a refusal with a `host_call_failed` event
//! (or a reset when even the refusal fails), never a trap and never a pass.

mod common;

use common::dpp_guard;
use harness::{Fault, LogLevel, Node, StreamId, Vm, VmConfig, ALLOCATE};
use serde_json::{json, Value};

const BAD_ARGUMENT: i32 = 2;
const NOT_FOUND: i32 = 1;
const INTERNAL_FAILURE: i32 = 10;
const KEYS: &str = "k1=AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8";

fn policy() -> Value {
    json!({
        "version": 1,
        "keys": {"env": "DPP_KEYS"},
        "routes": [
            {"name": "orders", "match": {"path": {"prefix": "/orders/"}}, "no_store": true},
            {"name": "seal", "match": {"path": {"prefix": "/seal/"}},
             "encrypt": [{"direction": "request", "selectors": ["$.email"]}]}
        ],
        "logging": {"access_records": "all"}
    })
}

fn guard(policy: Value) -> Vm {
    let config = VmConfig::new()
        .plugin_config(policy.to_string())
        .root_id("dpp_guard")
        .vm_id("dpp_guard")
        .env("DPP_KEYS", KEYS)
        .log_level(LogLevel::Info)
        .stream_property("connection.tls_version", "TLSv1.3");
    Vm::start(dpp_guard(), &Node::new(), config).expect("dpp_guard starts")
}

fn headers<'a>(method: &'a str, path: &'a str) -> Vec<(&'a str, &'a str)> {
    vec![
        (":method", method),
        (":path", path),
        (":authority", "api.example.com"),
        (":scheme", "https"),
        ("content-type", "application/json"),
    ]
}

/// The events of kind `kind` logged so far.
fn events(vm: &Vm, kind: &str) -> Vec<Value> {
    vm.logs()
        .iter()
        .filter_map(|l| l.message.strip_prefix("dpp_event "))
        .filter_map(|j| serde_json::from_str::<Value>(j).ok())
        .filter(|e| e["event"] == kind)
        .collect()
}

fn refused_with(vm: &Vm, id: StreamId, status: u32) {
    assert!(vm.failure().is_none(), "trapped: {:?}", vm.failure());
    let s = vm.stream(id).unwrap();
    assert_eq!(s.status(), Some(status), "{:#?}", vm.logs());
    let body: Value = serde_json::from_slice(&s.downstream().body).unwrap();
    assert_eq!(body["error"], "check_unavailable");
    assert!(!s.failed());
}

#[test]
fn request_headers_gone_are_a_refusal_with_an_event() {
    let mut vm = guard(policy());
    let id = vm.open_stream().unwrap();
    vm.inject_fault(Fault::new("proxy_get_header_map_pairs", BAD_ARGUMENT).on_stream(id));
    vm.request_headers(id, &headers("GET", "/catalog/1"), true)
        .unwrap();
    refused_with(&vm, id, 500);
    assert_eq!(
        vm.stream(id).unwrap().upstream().headers,
        None,
        "nothing sent"
    );
    let e = events(&vm, "host_call_failed");
    assert_eq!(e.len(), 1, "{:#?}", vm.logs());
    assert!(e[0]["detail"]
        .as_str()
        .unwrap()
        .contains("request headers: proxy_get_header_map_pairs returned status 2"));
    assert_eq!(
        vm.node().counter("dpp_guard.events.host_call_failed"),
        Some(1)
    );
    // The next stream is unaffected.
    let ok = vm.open_stream().unwrap();
    vm.request_headers(ok, &headers("GET", "/catalog/1"), true)
        .unwrap();
    assert!(vm.stream(ok).unwrap().upstream().end);
}

#[test]
fn response_headers_gone_are_a_502_not_the_upstream_response() {
    let mut vm = guard(policy());
    let id = vm.open_stream().unwrap();
    vm.request_headers(id, &headers("GET", "/catalog/1"), true)
        .unwrap();
    vm.inject_fault(Fault::new("proxy_get_header_map_value", BAD_ARGUMENT).on_stream(id));
    vm.response_headers(id, &[(":status", "200"), ("x-from", "upstream")], false)
        .unwrap();
    vm.response_body(id, b"{\"pii\":\"jane@example.com\"}", true)
        .unwrap();
    refused_with(&vm, id, 502);
    let s = vm.stream(id).unwrap();
    assert_eq!(s.downstream().header("x-from"), None);
    assert!(!s.downstream().body_str().contains("jane"));
    assert_eq!(events(&vm, "host_call_failed").len(), 1);
}

#[test]
fn a_body_that_cannot_be_read_is_refused_and_never_forwarded() {
    for (status, why) in [(NOT_FOUND, "not found"), (INTERNAL_FAILURE, "internal")] {
        let mut vm = guard(policy());
        let id = vm.open_stream().unwrap();
        vm.inject_fault(Fault::new("proxy_get_buffer_bytes", status).on_stream(id));
        vm.request_headers(id, &headers("POST", "/seal/1"), false)
            .unwrap();
        vm.request_body(id, br#"{"email":"jane@example.com"}"#, true)
            .unwrap();
        refused_with(&vm, id, 500);
        let s = vm.stream(id).unwrap();
        let up = s.upstream();
        assert!(
            up.body.is_empty() && !up.end,
            "{why}: body forwarded: {up:?}"
        );
        assert_eq!(events(&vm, "host_call_failed").len(), 1, "{why}");
    }
}

#[test]
fn a_rewritten_body_the_host_refuses_to_take_is_not_replaced_by_the_original() {
    let mut vm = guard(policy());
    let id = vm.open_stream().unwrap();
    vm.inject_fault(Fault::new("proxy_set_buffer_bytes", BAD_ARGUMENT).on_stream(id));
    vm.request_headers(id, &headers("POST", "/seal/1"), false)
        .unwrap();
    vm.request_body(id, br#"{"email":"jane@example.com"}"#, true)
        .unwrap();
    refused_with(&vm, id, 500);
    let s = vm.stream(id).unwrap();
    assert!(
        !s.upstream().body_str().contains("jane"),
        "{:?}",
        s.upstream()
    );
}

#[test]
fn a_hold_marker_that_cannot_be_set_refuses_the_request() {
    let mut vm = guard(policy());
    let id = vm.open_stream().unwrap();
    vm.inject_fault(Fault::new("proxy_replace_header_map_value", BAD_ARGUMENT).on_stream(id));
    vm.request_headers(id, &headers("POST", "/seal/1"), false)
        .unwrap();
    refused_with(&vm, id, 500);
    assert_eq!(vm.stream(id).unwrap().upstream().headers, None);
}

#[test]
fn a_refusal_that_cannot_be_sent_resets_the_stream() {
    let mut vm = guard(policy());
    let id = vm.open_stream().unwrap();
    vm.inject_fault(Fault::new("proxy_get_header_map_pairs", BAD_ARGUMENT).on_stream(id));
    vm.inject_fault(Fault::new("proxy_send_local_response", INTERNAL_FAILURE).on_stream(id));
    vm.request_headers(id, &headers("GET", "/orders/1"), true)
        .unwrap();
    assert!(vm.failure().is_none());
    let s = vm.stream(id).unwrap();
    assert!(s.is_reset(), "{:#?}", vm.logs());
    assert_eq!(s.upstream().headers, None);
    assert_eq!(events(&vm, "host_call_failed").len(), 2);
}

#[test]
fn a_property_missing_at_log_is_reported_and_the_record_still_published() {
    let mut vm = guard(policy());
    let id = vm.open_stream().unwrap();
    vm.request_headers(id, &headers("GET", "/catalog/1"), true)
        .unwrap();
    vm.response_headers(id, &[(":status", "200")], true)
        .unwrap();
    vm.inject_fault(
        Fault::new("proxy_get_property", INTERNAL_FAILURE)
            .on_stream(id)
            .times(1),
    );
    vm.finish(id).unwrap();
    assert!(vm.failure().is_none());
    let e = events(&vm, "host_call_failed");
    assert_eq!(e.len(), 1, "{:#?}", vm.logs());
    assert!(e[0]["detail"].as_str().unwrap().starts_with("log: "));
    let record = vm.stream(id).unwrap().filter_state()["wasm.dpp_access_log"].clone();
    let record: Value = serde_json::from_slice(&record).unwrap();
    assert_eq!(record["actions"]["events"], json!(["host_call_failed"]));
}

#[test]
fn the_upstream_guard_refuses_when_the_connection_cannot_be_read() {
    let node = Node::new();
    let config = VmConfig::new()
        .plugin_config(policy().to_string())
        .root_id("dpp_upstream_guard")
        .vm_id("dpp_guard")
        .env("DPP_KEYS", KEYS)
        .log_level(LogLevel::Info)
        .property("xds.cluster_name", "service");
    let mut vm = Vm::start(dpp_guard(), &node, config).unwrap();
    let id = vm.open_stream().unwrap();
    vm.set_stream_property(id, "upstream.local_address", "127.0.0.1:40000")
        .unwrap();
    vm.set_stream_property(id, "upstream.tls_version", "TLSv1.3")
        .unwrap();
    // The cluster name reads fine; the connection's address does not.
    vm.inject_fault(
        Fault::new("proxy_get_property", INTERNAL_FAILURE)
            .on_stream(id)
            .after(1),
    );
    vm.request_headers(id, &headers("GET", "/orders/1"), true)
        .unwrap();
    assert!(vm.failure().is_none());
    let s = vm.stream(id).unwrap();
    assert_eq!(s.upstream().headers, None, "not sent on facts not seen");
    assert_eq!(s.status(), Some(502));
    assert_eq!(events(&vm, "host_call_failed").len(), 1, "{:#?}", vm.logs());
}

#[test]
fn host_calls_are_counted_per_request() {
    let mut vm = guard(json!({
        "version": 1,
        "routes": [{"name": "orders", "match": {"path": {"prefix": "/orders/"}}}],
        "transport": {"upstream": {"clusters": {"service": {"exempt": {"reason": "test"}}}}},
        "logging": {"access_records": "protected"}
    }));
    // Warm up: the first request of a worker is watched.
    let id = vm.open_stream().unwrap();
    vm.request_headers(id, &headers("GET", "/catalog/1"), true)
        .unwrap();
    vm.finish(id).unwrap();
    vm.reset_host_calls();
    let id = vm.open_stream().unwrap();
    vm.request_headers(id, &headers("POST", "/catalog/1"), false)
        .unwrap();
    vm.request_body(id, b"{}", true).unwrap();
    vm.response_headers(id, &[(":status", "200")], false)
        .unwrap();
    vm.response_body(id, b"{}", true).unwrap();
    vm.finish(id).unwrap();
    let calls = vm.host_calls().clone();
    // An unprotected request: the request map once (path and hold marker),
    // the response's hold marker once; nothing else.
    assert_eq!(
        calls.get("proxy_get_header_map_pairs"),
        Some(&1),
        "{calls:?}"
    );
    assert_eq!(
        calls.get("proxy_get_header_map_value"),
        Some(&1),
        "{calls:?}"
    );
    assert_eq!(calls.get("proxy_get_property"), None, "{calls:?}");
    assert_eq!(calls.get(ALLOCATE), Some(&1), "{calls:?}");
}
