//! Self-tests of the host on the probe module (test-modules/probe): each
//! test drives one host feature the way Envoy would and asserts on the
//! final host state.

mod common;

use std::time::Duration;

use common::{probe_unknown, probe_wasip1, root_only};
use harness::{Action, Error, HttpCallScript, LogLevel, Node, Plugin, StreamId, Vm, VmConfig};

fn start(config: VmConfig) -> Vm {
    Vm::start(probe_wasip1(), &Node::new(), config).expect("probe starts")
}

/// Request headers for mode `probe`; no body unless `eos` is false.
fn request(vm: &mut Vm, probe: &str, extra: &[(&str, &str)], eos: bool) -> (StreamId, Action) {
    let id = vm.open_stream().unwrap();
    let mut h = vec![
        (":method", "POST"),
        (":path", "/orders?id=7"),
        (":authority", "api.example.com"),
        (":scheme", "http"),
        ("x-probe", probe),
    ];
    h.extend_from_slice(extra);
    let action = vm.request_headers(id, &h, eos).unwrap();
    (id, action)
}

#[test]
fn header_mutations_reach_the_upstream() {
    let mut vm = start(VmConfig::new());
    let (id, action) = request(
        &mut vm,
        "mutate",
        &[("x-replace", "old"), ("x-remove", "gone")],
        true,
    );
    assert_eq!(action, Action::Continue);
    let s = vm.stream(id).unwrap();
    let up = s.upstream();
    assert!(up.end);
    assert_eq!(up.header("x-added"), Some("1"));
    assert_eq!(up.header("x-replace"), Some("new"));
    assert_eq!(up.header("x-remove"), None);
    assert_eq!(up.header(":path"), Some("/rewritten"));
}

#[test]
fn body_rewrite_without_content_length_is_clean() {
    let mut vm = start(VmConfig::new());
    let (id, _) = request(&mut vm, "rewrite-body", &[("content-length", "5")], false);
    vm.request_body(id, b"hello", true).unwrap();
    let s = vm.stream(id).unwrap();
    assert_eq!(s.upstream().body_str(), "REWRITTEN:HELLO");
    assert_eq!(s.upstream().header("content-length"), None);
    assert!(s.problems().is_empty(), "{:?}", s.problems());
}

#[test]
fn body_rewrite_with_stale_content_length_is_reported() {
    let mut vm = start(VmConfig::new());
    let (id, _) = request(
        &mut vm,
        "rewrite-body-keep-cl",
        &[("content-length", "5")],
        false,
    );
    vm.request_body(id, b"hello", true).unwrap();
    let s = vm.stream(id).unwrap();
    assert_eq!(s.upstream().header("content-length"), Some("5"));
    assert_eq!(s.problems().len(), 1);
    assert!(
        s.problems()[0].contains("content-length 5"),
        "{:?}",
        s.problems()
    );
}

#[test]
fn chunks_accumulate_while_the_filter_pauses() {
    let mut vm = start(VmConfig::new());
    let (id, _) = request(&mut vm, "rewrite-body", &[], false);
    assert_eq!(vm.request_body(id, b"ab", false).unwrap(), Action::Pause);
    assert_eq!(vm.stream(id).unwrap().upstream().body, b"");
    assert!(vm.stream(id).unwrap().request_paused());
    assert_eq!(vm.request_body(id, b"cd", false).unwrap(), Action::Pause);
    assert_eq!(vm.request_body(id, b"ef", true).unwrap(), Action::Continue);
    // Each callback saw everything buffered so far, as in Envoy.
    let sizes: Vec<&str> = vm
        .logs()
        .iter()
        .filter(|l| l.message.starts_with("request body_size"))
        .map(|l| l.message.as_str())
        .collect();
    assert_eq!(
        sizes,
        [
            "request body_size=2 eos=false",
            "request body_size=4 eos=false",
            "request body_size=6 eos=true"
        ]
    );
    assert_eq!(
        vm.stream(id).unwrap().upstream().body_str(),
        "REWRITTEN:ABCDEF"
    );
}

#[test]
fn chunks_pass_one_by_one_when_the_filter_continues() {
    let mut vm = start(VmConfig::new());
    let (id, _) = request(&mut vm, "none", &[], false);
    vm.request_body(id, b"ab", false).unwrap();
    assert_eq!(vm.stream(id).unwrap().upstream().body, b"ab");
    vm.request_body(id, b"cd", true).unwrap();
    assert!(vm.logged("request body_size=2 eos=true"));
    assert_eq!(vm.stream(id).unwrap().upstream().body, b"abcd");
}

#[test]
fn local_reply_stops_the_request_and_passes_the_response_callbacks() {
    let mut vm = start(VmConfig::new());
    let (id, _) = request(&mut vm, "local-reply", &[], false);
    // Later chunks are dropped: the stream is answered.
    vm.request_body(id, b"ignored", true).unwrap();
    let s = vm.stream(id).unwrap();
    assert_eq!(s.upstream().headers, None, "nothing reaches the upstream");
    assert_eq!(s.status(), Some(403));
    let down = s.downstream();
    assert_eq!(down.body_str(), "denied");
    assert_eq!(down.header("x-reason"), Some("probe"));
    assert_eq!(down.header("content-type"), Some("text/x-probe"));
    assert_eq!(down.header("content-length"), Some("6"));
    // Envoy runs the filter's encoder callbacks on its own local reply.
    assert_eq!(down.header("x-probe-saw"), Some("local-reply"));
    assert_eq!(s.local_reply().unwrap().status, 403);
}

#[test]
fn response_body_rewrite_with_content_length_removed() {
    let mut vm = start(VmConfig::new());
    let (id, _) = request(&mut vm, "rewrite-response", &[], true);
    vm.response_headers(id, &[(":status", "200"), ("content-length", "4")], false)
        .unwrap();
    vm.response_body(id, b"ab", false).unwrap();
    vm.response_body(id, b"cd", true).unwrap();
    let s = vm.stream(id).unwrap();
    assert_eq!(s.downstream().body_str(), "{\"rewritten\":true}");
    assert_eq!(s.downstream().header("content-length"), None);
    assert!(s.problems().is_empty());
}

#[test]
fn request_headers_are_gone_once_forwarded() {
    // Envoy drops its request-header pointer when the filter continues.
    let mut vm = start(VmConfig::new());
    let (id, _) = request(&mut vm, "late-header", &[], false);
    vm.request_body(id, b"x", true).unwrap();
    assert!(vm.logged("late read :path status=2"));
}

#[test]
fn properties_have_envoy_names_and_encodings() {
    let mut vm = start(
        VmConfig::new()
            .property("xds.route_name", "orders-route")
            .root_id("root-a")
            .vm_id("vm-a"),
    );
    let id = vm.open_stream().unwrap();
    vm.set_stream_property(id, "source.address", "10.1.2.3:5555")
        .unwrap();
    vm.set_stream_property(id, "connection.mtls", true).unwrap();
    vm.request_headers(
        id,
        &[
            (":method", "GET"),
            (":path", "/orders?id=7"),
            (":authority", "a"),
            ("x-probe", "props"),
        ],
        true,
    )
    .unwrap();
    for line in [
        "prop xds.route_name=Some(\"orders-route\")",
        "prop plugin_name=Some(\"plugin\")",
        "prop plugin_root_id=Some(\"root-a\")",
        "prop plugin_vm_id=Some(\"vm-a\")",
        "prop source.address=Some(\"10.1.2.3:5555\")",
        "prop request.path=Some(\"/orders?id=7\")",
        "prop request.url_path=Some(\"/orders\")",
        "prop request.method=Some(\"GET\")",
        // No upstream connection yet in the request phase.
        "prop upstream.address=None",
        "prop connection.mtls=Some([1])",
        "prop probe_state=Some(\"seen\")",
    ] {
        assert!(vm.logged(line), "missing {line:?} in {:#?}", vm.logs());
    }
    vm.response_headers(id, &[(":status", "201")], true)
        .unwrap();
    assert!(vm.logged("prop response.code=Some([201, 0, 0, 0, 0, 0, 0, 0])"));
    let s = vm.stream(id).unwrap();
    assert_eq!(
        s.filter_state().get("wasm.probe_state").map(Vec::as_slice),
        Some(&b"seen"[..])
    );
}

#[test]
fn shared_data_cas_across_two_vms_of_one_vm_id() {
    let node = Node::new();
    let mut a = Vm::start(probe_wasip1(), &node, VmConfig::new().vm_id("shared")).unwrap();
    let mut b = Vm::start(probe_wasip1(), &node, VmConfig::new().vm_id("shared")).unwrap();
    let mut other = Vm::start(probe_wasip1(), &node, VmConfig::new().vm_id("other")).unwrap();

    request(&mut a, "shared-set", &[("x-value", "one")], true);
    let (_, cas1) = node.shared_data("shared", "k").unwrap();
    // B sees A's write and updates with the current CAS.
    request(&mut b, "shared-get", &[], true);
    assert!(b.logged(&format!("shared get value=Some(\"one\") cas=Some({cas1})")));
    let cas1_s = cas1.to_string();
    request(
        &mut b,
        "shared-set",
        &[("x-value", "two"), ("x-cas", &cas1_s)],
        true,
    );
    assert!(b.logged("-> Ok(())"));
    // A's CAS is now stale.
    request(
        &mut a,
        "shared-set",
        &[("x-value", "three"), ("x-cas", &cas1_s)],
        true,
    );
    assert!(a.logged("shared set three cas=Some") && a.logged("-> Err(CasMismatch)"));
    assert_eq!(node.shared_data("shared", "k").unwrap().0, b"two");
    // Another vm_id has its own namespace.
    request(&mut other, "shared-get", &[], true);
    assert!(other.logged("shared get value=None cas=None"));
}

#[test]
fn shared_queue_delivers_to_the_registering_vm() {
    let node = Node::new();
    let mut owner = Vm::start(
        probe_wasip1(),
        &node,
        VmConfig::new().vm_id("shared").plugin_config("queue"),
    )
    .unwrap();
    assert!(owner.logged("registered queue Ok(1)"));
    let mut producer = Vm::start(probe_wasip1(), &node, VmConfig::new().vm_id("shared")).unwrap();
    request(&mut producer, "enqueue", &[("x-value", "job-1")], true);
    request(&mut producer, "enqueue", &[("x-value", "job-2")], true);
    assert!(producer.logged("enqueue -> Ok(())"));
    assert!(!owner.logged("dequeued"));
    // The owner's worker picks the notifications up on its next event loop turn.
    owner.pump().unwrap();
    assert!(owner.logged("dequeued job-1") && owner.logged("dequeued job-2"));
}

#[test]
fn metrics_are_readable_by_name_and_shared_by_vms() {
    let node = Node::new();
    let mut a = Vm::start(probe_wasip1(), &node, VmConfig::new()).unwrap();
    let mut b = Vm::start(probe_wasip1(), &node, VmConfig::new()).unwrap();
    let (id, _) = request(&mut a, "metrics", &[], true);
    a.finish(id).unwrap();
    let (id, _) = request(&mut b, "none", &[], false);
    assert_eq!(node.gauge("probe.inflight"), Some(1));
    b.request_body(id, b"12345", true).unwrap();
    b.finish(id).unwrap();
    assert_eq!(node.counter("probe.requests"), Some(2));
    assert_eq!(node.counter("wasmcustom.probe.requests"), Some(2));
    assert_eq!(node.gauge("probe.inflight"), Some(0));
    assert_eq!(node.histogram("probe.body_size"), Some(vec![42, 5]));
    // Envoy cannot read a histogram back.
    assert!(a.logged("metric requests=Ok(1) histogram-read=Err(BadArgument)"));
}

#[test]
fn virtual_clock_drives_on_tick() {
    let mut vm = start(VmConfig::new().plugin_config("tick"));
    assert_eq!(vm.tick_period_ms(), 1000);
    vm.advance(Duration::from_millis(999)).unwrap();
    assert_eq!(vm.node().counter("probe.ticks"), Some(0));
    vm.advance(Duration::from_millis(2001)).unwrap();
    assert_eq!(vm.node().counter("probe.ticks"), Some(3));
    // The module's clock is the virtual one: ticks at 1s, 2s, 3s after start.
    let start_ms: u64 = 1_767_225_600_000;
    for s in 1..=3u64 {
        assert!(vm.logged(&format!("tick at {}", start_ms + 1000 * s)));
    }
}

#[test]
fn http_call_scripted_success_resumes_the_request() {
    let mut vm = start(VmConfig::new().upstream("auth", HttpCallScript::respond(200, "alice")));
    let (id, action) = request(&mut vm, "http-call", &[], true);
    assert_eq!(action, Action::Pause);
    let call = &vm.http_calls()[0];
    assert_eq!(call.upstream, "auth");
    assert_eq!(call.body, b"who?");
    assert_eq!(call.timeout_ms, 1000);
    let s = vm.stream(id).unwrap();
    assert_eq!(s.upstream().header("x-auth"), Some("alice"));
    assert!(s.upstream().end);
}

#[test]
fn http_call_manual_failure_and_unknown_cluster() {
    let mut vm = start(VmConfig::new().upstream("auth", HttpCallScript::Manual));
    let (id, _) = request(&mut vm, "http-call", &[], true);
    assert_eq!(vm.stream(id).unwrap().upstream().headers, None);
    let token = vm.http_calls()[0].token;
    vm.respond_http_call(token, HttpCallScript::Fail).unwrap();
    assert_eq!(vm.stream(id).unwrap().status(), Some(401));
    assert!(vm.logged(&format!("call {token} failed")));

    // No such cluster: Envoy refuses the call with BadArgument.
    let mut vm = start(VmConfig::new());
    let (id, _) = request(&mut vm, "http-call", &[], true);
    assert!(vm.logged("dispatch -> Err(BadArgument)"));
    assert_eq!(vm.stream(id).unwrap().status(), Some(500));
}

#[test]
fn environment_variables_are_visible_through_wasi() {
    let mut vm = start(VmConfig::new().env("PROBE_SECRET", "s3cr3t!"));
    let (id, _) = request(&mut vm, "env", &[], true);
    assert_eq!(
        vm.stream(id).unwrap().upstream().header("x-env-len"),
        Some("7")
    );
    assert!(vm.logged("env PROBE_SECRET present=true"));
    let mut vm = start(VmConfig::new());
    let (id, _) = request(&mut vm, "env", &[], true);
    assert_eq!(
        vm.stream(id).unwrap().upstream().header("x-env-len"),
        Some("0")
    );
}

#[test]
fn wasi_clock_is_virtual() {
    let mut vm = start(VmConfig::new());
    request(&mut vm, "time", &[], true);
    assert!(vm.logged("wasi time 1767225600"));
}

#[test]
fn a_trap_fails_the_stream_with_503_and_a_backtrace() {
    let mut vm = start(VmConfig::new());
    let id = vm.open_stream().unwrap();
    let err = vm
        .request_headers(id, &[(":path", "/"), ("x-probe", "panic")], true)
        .unwrap_err();
    let Error::Trap {
        callback,
        message,
        backtrace,
    } = &err
    else {
        panic!("expected a trap, got {err:?}");
    };
    assert_eq!(callback, "proxy_on_request_headers");
    assert!(message.contains("unreachable"), "{message}");
    assert!(
        backtrace.contains("on_http_request_headers"),
        "backtrace names the filter function: {backtrace}"
    );
    // The SDK's panic hook logs the message at critical before the trap.
    assert!(vm
        .logs_at(LogLevel::Critical)
        .iter()
        .any(|l| l.contains("probe panic")));
    let s = vm.stream(id).unwrap();
    assert_eq!(s.status(), Some(503));
    assert!(s.failed());
    assert_eq!(s.upstream().headers, None);
    // Envoy stops calling a failed VM: the next stream gets 503 too.
    let (id2, _) = request(&mut vm, "none", &[], true);
    assert_eq!(vm.stream(id2).unwrap().status(), Some(503));
}

/// Measured in Envoy 1.40 (FAIL_CLOSED): a module whose root context offers
/// no HTTP context traps in proxy_on_context_create; Envoy answers that
/// stream 503 (wasm_fail_stream, empty body) and every later one the same,
/// instead of stopping. tests/scenarios/fidelity-root-only-module.yaml
/// holds the harness to Envoy on it.
#[test]
fn a_trap_in_context_create_answers_503_and_the_vm_goes_on_answering() {
    let mut vm = Vm::start(root_only(), &Node::new(), VmConfig::new()).unwrap();
    assert!(vm.configured());
    let id = vm.open_stream().expect("the stream exists and is answered");
    let s = vm.stream(id).unwrap();
    assert_eq!(s.status(), Some(503));
    assert!(s.downstream().body.is_empty());
    assert_eq!(s.local_reply().unwrap().details, "wasm_fail_stream");
    assert!(s.failed());
    let trap = s.trap().expect("the stream carries its trap");
    assert!(trap.contains("proxy_on_context_create"), "{trap}");
    assert!(matches!(
        vm.failure(),
        Some(Error::Trap { callback, .. }) if callback == "proxy_on_context_create"
    ));
    // The rest of the stream is Envoy's: nothing reaches the upstream.
    vm.request_headers(id, &[(":method", "GET"), (":path", "/")], true)
        .unwrap();
    vm.finish(id).unwrap();
    assert_eq!(vm.stream(id).unwrap().upstream().headers, None);
    // Later streams: the failed VM is not called again, each gets 503.
    for _ in 0..2 {
        let next = vm.open_stream().unwrap();
        vm.request_headers(next, &[(":method", "GET"), (":path", "/")], true)
            .unwrap();
        let s = vm.stream(next).unwrap();
        assert_eq!(s.status(), Some(503));
        assert_eq!(s.upstream().headers, None);
        assert_eq!(s.trap(), None, "the trap belongs to the first stream");
    }
}

#[test]
fn a_runaway_loop_runs_out_of_fuel() {
    let mut vm = start(VmConfig::new().fuel_per_call(5_000_000));
    let id = vm.open_stream().unwrap();
    let err = vm
        .request_headers(id, &[(":path", "/"), ("x-probe", "loop")], true)
        .unwrap_err();
    assert!(
        matches!(&err, Error::Trap { message, .. } if message.contains("fuel")),
        "{err}"
    );
    assert_eq!(vm.stream(id).unwrap().status(), Some(503));
}

#[test]
fn bad_pointers_get_invalid_memory_access_not_a_trap() {
    let mut vm = start(VmConfig::new());
    let (id, action) = request(&mut vm, "bad-pointers", &[], true);
    assert_eq!(action, Action::Continue);
    assert!(vm.logged("bad pointers -> 6 6 ok=0"), "{:#?}", vm.logs());
    assert!(vm.stream(id).unwrap().upstream().end);
}

#[test]
fn unsupported_calls_answer_unimplemented_and_there_are_no_files() {
    let mut vm = start(VmConfig::new());
    let (id, _) = request(&mut vm, "unimplemented", &[], true);
    assert!(
        vm.logged("foreign function -> 12; fs -> Err(NotFound)"),
        "{:#?}",
        vm.logs()
    );
    assert!(vm.stream(id).unwrap().upstream().end);
}

#[test]
fn a_rejected_configuration_answers_500_like_envoy_ecds() {
    let mut vm = start(VmConfig::new().plugin_config("reject"));
    assert!(!vm.configured());
    assert!(vm
        .logs_at(LogLevel::Critical)
        .contains(&"probe: bad configuration"));
    let (id, _) = request(&mut vm, "mutate", &[], true);
    let s = vm.stream(id).unwrap();
    assert_eq!(s.status(), Some(500));
    assert_eq!(s.downstream().body, b"");
    assert_eq!(s.upstream().headers, None);
}

#[test]
fn on_log_sees_the_final_response() {
    let mut vm = start(VmConfig::new());
    let (id, _) = request(&mut vm, "none", &[], true);
    vm.response_headers(id, &[(":status", "204")], true)
        .unwrap();
    vm.finish(id).unwrap();
    assert!(vm.logged("on_log status=Some(\"204\")"));
}

#[test]
fn wasm32_unknown_unknown_build_runs() {
    let plugin: &Plugin = probe_unknown();
    assert_eq!(plugin.abi_version(), "0.2.1");
    let mut vm = Vm::start(plugin, &Node::new(), VmConfig::new()).unwrap();
    let (id, _) = request(&mut vm, "mutate", &[("x-remove", "1")], true);
    let s = vm.stream(id).unwrap();
    assert_eq!(s.upstream().header("x-added"), Some("1"));
    assert_eq!(s.upstream().header("x-remove"), None);
    // Without WASI there is no environment, as on any unknown-unknown host.
    let (id, _) = request(&mut vm, "env", &[], true);
    assert_eq!(
        vm.stream(id).unwrap().upstream().header("x-env-len"),
        Some("0")
    );
}

#[test]
fn not_a_proxy_wasm_module_is_refused() {
    // The smallest valid wasm module: magic + version, no exports.
    let err = Plugin::from_bytes(b"\0asm\x01\0\0\0").err().unwrap();
    assert!(err.to_string().contains("proxy_abi_version"), "{err}");
}

#[test]
fn trailers_follow_the_body_to_the_upstream() {
    let mut vm = start(VmConfig::new());
    let (id, _) = request(&mut vm, "none", &[], false);
    vm.request_body(id, b"data", false).unwrap();
    assert!(!vm.stream(id).unwrap().upstream().end);
    vm.request_trailers(id, &[("grpc-status", "0")]).unwrap();
    let up = vm.stream(id).unwrap().upstream().clone();
    assert!(up.end);
    assert_eq!(up.body, b"data");
    assert_eq!(
        up.trailers,
        Some(vec![("grpc-status".to_string(), "0".to_string())])
    );
}
