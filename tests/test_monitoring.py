"""Issue 14 end to end in Envoy 1.40 with two workers (`--concurrency 2`):
canary records, the per-client rate and volume alarms (state shared by both
workers), and report-only mode against enforce on the same requests."""
from __future__ import annotations

import base64
import json
import os
import re
import ssl
import subprocess
import time

import pytest

from support.paths import ROOT
from support.upstream import RecordingHttpServer, ScriptedResponse
from test_transport import cluster, transport_stack, with_transport  # noqa: F401 (fixture)

CLI = ROOT / "target" / "debug" / "dpp-guard"
CANARY = "ORD-CANARY-0001"
# Long windows: a test never straddles one (windows align to the epoch).
DAY = 86400


@pytest.fixture
def log_key() -> str:
    return base64.b64encode(os.urandom(32)).decode()


def digest(value: str, key: str) -> str:
    """The policy's canary digest, as the operator makes it: with the CLI."""
    r = subprocess.run([str(CLI), "canary", "digest", "-"], input=value, capture_output=True, text=True,
                       env={"DPP_GUARD_LOG_KEY": key, "PATH": os.environ.get("PATH", "")}, check=True)
    return r.stdout.strip()


def events(stack, kind: str | None = None) -> list[dict]:
    out = []
    for line in stack.envoy.plugin_lines():
        if "dpp_event " in line:
            e = json.loads(line.split("dpp_event ", 1)[1])
            if kind is None or e["event"] == kind:
                out.append(e)
    return out


def wait_for(check, what: str, timeout: float = 15.0):
    """Polls a condition Envoy reaches asynchronously (a log flush, a stream's
    log phase): bounded, not a timing assertion."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value or time.monotonic() > deadline:
            assert value, f"timed out waiting for {what}"
            return value
        time.sleep(0.05)


def counter(stack, name: str) -> int:
    return stack.envoy.stats().get(f"wasmcustom.dpp_guard.{name}", 0)


def policy(**top) -> dict:
    doc = {
        "version": 1,
        "routes": [
            {"name": "orders", "match": {"path": {"prefix": "/orders/"}}},
        ],
        "logging": {"require_log_key": True},
    }
    doc.update(top)
    return doc


def test_a_canary_fetched_once_gives_one_critical_event_and_one_metric(guard_stack, log_key, tmp_path):
    doc = policy(monitoring={"canaries": [{"digest": digest(CANARY, log_key), "label": "order-canary-1"}]})
    stack = guard_stack(policy=doc, env={"DPP_GUARD_LOG_KEY": log_key}, concurrency=2)
    # Other traffic on both workers first: nothing is raised.
    for i in range(4):
        assert stack.request("GET", f"/orders/v0/orders/ORD-{i}").status == 200
    r = stack.request("GET", f"/orders/v0/orders/{CANARY}")
    assert r.status == 200, "not blocking: served"
    raised = wait_for(lambda: events(stack, "canary_accessed"), "the canary event")
    assert len(raised) == 1
    (e,) = raised
    assert e["severity"] == "critical" and e["route"] == "orders" and e["detail"] == "request: order-canary-1"
    assert e["subject"].startswith("p:")
    assert counter(stack, "events.canary_accessed") == 1
    assert counter(stack, "events_by_severity.critical") == 1
    prom = stack.envoy.admin_get("/stats/prometheus")
    assert re.search(r"^dpp_guard_events_canary_accessed(\{\})? 1$", prom, re.M)
    # The plaintext is in no log line, no config dump, no metric name.
    wait_for(lambda: stack.access_log().count("\n") >= 5, "the access records")
    for where, text in [("envoy log", stack.envoy.log()), ("access log", stack.access_log()),
                        ("config dump", stack.envoy.admin_get("/config_dump")),
                        ("stats", stack.envoy.admin_get("/stats")), ("prometheus", prom)]:
        assert CANARY not in text, where
    assert "/orders/v0/orders/[canary]" in stack.access_log()


def test_a_blocking_canary_is_refused_403_and_reported_once(guard_stack, log_key):
    doc = policy(monitoring={"canaries": [{"digest": digest(CANARY, log_key), "label": "order-canary-1",
                                           "block": True}]})
    stack = guard_stack(policy=doc, env={"DPP_GUARD_LOG_KEY": log_key}, concurrency=2)
    r = stack.request("GET", f"/search?order={CANARY.replace('-', '%2D')}")
    assert r.status == 403 and r.json()["error"] == "canary_record"
    assert stack.service.requests == [], "nothing reached the service"
    wait_for(lambda: events(stack, "canary_accessed"), "the canary event")
    assert len(events(stack, "canary_accessed")) == 1
    assert counter(stack, "events.canary_accessed") == 1


def test_a_blocking_canary_in_a_response_field_is_refused_502(guard_stack, log_key):
    """A canary the service returns in a field an encrypt rule selects: the
    check sees the plaintext before sealing; blocking answers 502 and nothing
    of the body reaches the client. On the field-rule configuration
    (envoy/dpp-guard-fields.yaml): its hold filters keep the response headers
    back until the body is decided, so a 502 can still replace them."""
    email = "canary.buyer@example.com"
    doc = policy(monitoring={"canaries": [{"digest": digest(email, log_key), "label": "buyer-canary",
                                           "block": True}]},
                 keys={"inline": "k1=" + base64.urlsafe_b64encode(os.urandom(32)).decode().rstrip("="),
                       "allow_inline_keys_for_testing_only": True})
    doc["routes"][0]["encrypt"] = [{"direction": "response", "selectors": ["$.buyer.email"]}]

    def responder(req):
        who = email if req.path.endswith("/canary") else "jane@example.com"
        return ScriptedResponse(body=json.dumps({"id": 1, "buyer": {"email": who}}).encode())

    stack = guard_stack(policy=doc, env={"DPP_GUARD_LOG_KEY": log_key}, concurrency=2,
                        responder=responder, bootstrap=ROOT / "envoy" / "dpp-guard-fields.yaml")
    ok = stack.request("GET", "/orders/1")
    assert ok.status == 200 and "jane@example.com" not in ok.body.decode(), "sealed, not blocked"
    r = stack.request("GET", "/orders/canary")
    assert r.status == 502 and email not in r.body.decode()
    raised = wait_for(lambda: events(stack, "canary_accessed"), "the canary event")
    assert len(raised) == 1 and raised[0]["detail"] == "response: buyer-canary"
    assert email not in stack.envoy.log() + stack.access_log()


def test_a_burst_raises_one_rate_anomaly_per_window_and_throttles_across_workers(guard_stack, log_key):
    doc = policy()
    doc["routes"][0]["limits"] = {"requests": {"max": 5, "window_seconds": DAY, "throttle": True}}
    stack = guard_stack(policy=doc, env={"DPP_GUARD_LOG_KEY": log_key}, concurrency=2)
    statuses, retry = [], []
    for i in range(12):  # a fresh connection each: both workers serve them
        r = stack.request("GET", f"/orders/v0/orders/{i}")
        statuses.append(r.status)
        if r.status == 429:
            retry.append(int(r.headers["retry-after"]))
    assert statuses == [200] * 5 + [429] * 7, "the limit holds across both workers"
    assert all(0 < s <= DAY for s in retry)
    wait_for(lambda: events(stack, "rate_anomaly"), "the rate event")
    (e,) = events(stack, "rate_anomaly")
    assert e["route"] == "orders" and e["subject"].startswith("p:") and "report_only" not in e
    assert counter(stack, "events.rate_anomaly") == 1
    assert counter(stack, "throttled") == 7
    assert len(stack.service.requests) == 5


def test_large_responses_raise_one_volume_anomaly_and_throttle_the_next_request(guard_stack, log_key):
    doc = policy()
    doc["routes"][0]["limits"] = {"response_bytes": {"max": 1000, "window_seconds": DAY, "throttle": True}}
    body = json.dumps({"pad": "x" * 600}).encode()
    stack = guard_stack(policy=doc, env={"DPP_GUARD_LOG_KEY": log_key}, concurrency=2,
                        responder=lambda req: ScriptedResponse(body=body))
    assert stack.request("GET", "/orders/1").status == 200
    assert stack.request("GET", "/orders/2").status == 200
    # Counted when each stream completes (its log phase): wait for it.
    wait_for(lambda: counter(stack, "events.volume_anomaly") == 1, "the volume alarm")
    r = stack.request("GET", "/orders/3")
    assert r.status == 429 and int(r.headers["retry-after"]) > 0
    assert stack.request("GET", "/catalog/1").status == 200, "other routes are not limited"
    assert len(events(stack, "volume_anomaly")) == 1
    assert "response_bytes: more than 1000" in events(stack, "volume_anomaly")[0]["detail"]


def bad_requests(stack):
    """The monitoring issue's bad-request set, one of each control."""
    return [
        ("kill_switch_refusal", stack.request("GET", "/mws/Orders")),
        ("unmatched_request", stack.request("GET", "/elsewhere")),
        ("canary_accessed", stack.request("GET", f"/orders/{CANARY}")),
        ("rate_anomaly", [stack.request("GET", "/orders/x") for _ in range(3)][-1]),
    ]


@pytest.mark.parametrize("mode", ["enforce", "report"])
def test_report_mode_passes_what_enforce_refuses_with_the_same_events(guard_stack, log_key, mode):
    doc = policy(mode=mode, requests={"unmatched": "deny"},
                 monitoring={"canaries": [{"digest": digest(CANARY, log_key), "label": "c1", "block": True}]})
    doc["routes"] = [
        {"name": "legacy-mws", "match": {"path": {"prefix": "/mws/"}}, "kill_switch": True},
        {"name": "orders", "match": {"path": {"prefix": "/orders/"}},
         "limits": {"requests": {"max": 2, "window_seconds": DAY, "throttle": True}}},
    ]
    stack = guard_stack(policy=doc, env={"DPP_GUARD_LOG_KEY": log_key}, concurrency=2)
    results = bad_requests(stack)
    statuses = [r.status for _, r in results]
    if mode == "enforce":
        assert statuses == [503, 404, 403, 429]
    else:
        assert statuses == [200, 200, 200, 200], "everything reached the service"
    kinds = [k for k, _ in results]
    wait_for(lambda: {e["event"] for e in events(stack)} >= set(kinds), "the events")
    assert len(stack.service.requests) == (2 if mode == "enforce" else 6)
    raised = [e for e in events(stack) if e["event"] in kinds]
    assert sorted(e["event"] for e in raised) == sorted(kinds), "the same events in both modes"
    assert all(e.get("report_only", False) == (mode == "report") for e in raised)
    for kind in kinds:
        assert counter(stack, f"events.{kind}") == 1
        assert counter(stack, f"report_only.{kind}") == (1 if mode == "report" else 0)


@pytest.mark.parametrize("mode", ["enforce", "report"])
def test_the_upstream_guard_in_report_mode_lets_a_refused_connection_carry_the_request(
        transport_stack, pki, mode):
    """The same TLS 1.2 upstream under a TLS 1.3 minimum: enforce refuses
    (502, nothing sent), report sends the request; the same event, flagged."""
    old = transport_stack.own(RecordingHttpServer(tls=pki.leaf("tls12-only"),
                                                  tls_max_version=ssl.TLSVersion.TLSv1_2))
    stack = transport_stack([cluster("old", old.port, tls_ca=pki.ca_cert)],
                            policy=with_transport({"upstream": {"min_tls_version": "TLSv1.3", "mode": mode}}))
    r = stack.request("POST", "/old/x", body=b'{"a":1}')
    (event,) = stack.events("upstream_tls_version_refused")
    if mode == "enforce":
        assert r.status == 502 and old.requests == []
        assert "report_only" not in event
        assert stack.counter("dpp_guard.upstream.report_only") == 0
    else:
        assert r.status == 200 and len(old.requests) == 1
        assert event["report_only"] is True
        assert stack.counter("dpp_guard.upstream.report_only") == 1
        assert stack.counter("dpp_guard.report_only.upstream_tls_version_refused") == 1
    assert "cluster=old" in event["detail"]
