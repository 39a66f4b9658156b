"""The foundation slice in a real Envoy: kill_switch, no_store, unprotected
routes untouched, and an invalid policy failing closed."""
from __future__ import annotations

import json

import pytest

from support.envoy import policy_text
from support.upstream import ScriptedResponse

POLICY = {
    "version": 1,
    "routes": [
        {"name": "legacy-mws", "match": {"path": {"prefix": "/mws/"}}, "kill_switch": True},
        {"name": "orders", "match": {"path": {"prefix": "/orders/"}, "methods": ["GET", "POST"]},
         "no_store": True},
    ],
}


def test_kill_switch_answers_503_and_nothing_reaches_the_service(guard_stack):
    stack = guard_stack(policy=POLICY)
    r = stack.request("POST", "/mws/Orders/2013-09-01?Action=ListOrders", body='{"a":1}',
                      headers={"content-type": "application/json"})
    assert r.status == 503
    assert r.headers["content-type"] == "application/json"
    assert r.json()["error"] == "route_disabled"
    assert stack.service.requests == [], "a killed route must not reach the service"
    events = [l for l in stack.envoy.plugin_lines() if "dpp_event" in l and "kill_switch_refusal" in l]
    assert len(events) == 1
    event = json.loads(events[0].split("dpp_event ", 1)[1])
    request_id = event.pop("request_id")
    assert event == {"event": "kill_switch_refusal", "severity": "warning", "category": "refusal",
                     "route": "legacy-mws", "method": "POST"}
    assert len(request_id) == 36, "Envoy's x-request-id (a UUID) joins the event to its access record"
    assert "ListOrders" not in stack.envoy.log(), "the query string must not be logged"


def test_no_store_marks_responses_uncacheable(guard_stack):
    stack = guard_stack(policy=POLICY, responder=lambda req: ScriptedResponse(
        headers={"content-type": "application/json", "cache-control": "public, max-age=600"},
        body=b'{"payload":{"BuyerEmail":"x@example.com"}}'))
    r = stack.request("GET", "/orders/v0/orders/902-1/buyerInfo")
    assert r.status == 200
    assert r.headers["cache-control"] == "no-store", "the service's cacheable header must be replaced"
    assert r.headers["pragma"] == "no-cache"
    assert r.json() == {"payload": {"BuyerEmail": "x@example.com"}}
    assert [q.path for q in stack.service.requests] == ["/orders/v0/orders/902-1/buyerInfo"]


def test_method_outside_the_route_is_not_covered(guard_stack):
    stack = guard_stack(policy=POLICY)
    r = stack.request("DELETE", "/orders/v0/orders/902-1")
    assert r.status == 200
    assert "pragma" not in r.headers and "cache-control" not in r.headers


def test_unprotected_route_passes_untouched(guard_stack):
    body = b'{"k": [1, 2.50, "x"],  "z":true}'
    stack = guard_stack(policy=POLICY, responder=lambda req: ScriptedResponse(
        status=201, headers={"content-type": "application/json", "cache-control": "max-age=60",
                             "x-service": "yes"}, body=req.body))
    r = stack.request("PUT", "/catalog/items/1?x=1", body=body,
                      headers={"content-type": "application/json", "x-custom": "kept"})
    assert r.status == 201
    assert r.body == body, "response body byte for byte"
    assert r.headers["cache-control"] == "max-age=60"
    assert r.headers["x-service"] == "yes"
    assert "pragma" not in r.headers
    (seen,) = stack.service.requests
    assert (seen.method, seen.path, seen.body) == ("PUT", "/catalog/items/1?x=1", body)
    assert seen.headers["x-custom"] == "kept"
    assert seen.headers["content-length"] == str(len(body))


def test_shipped_policy_is_what_the_shipped_ecds_file_carries(guard_stack):
    """The demo config runs as shipped (policy included) and enforces its routes."""
    stack = guard_stack()  # no override: envoy/dpp-guard.ecds.yaml's own policy
    assert stack.request("GET", "/mws/x").status == 503
    r = stack.request("GET", "/orders/v0/orders/1/address")
    assert (r.status, r.headers.get("cache-control")) == (200, "no-store")


@pytest.mark.parametrize("policy, field, problem", [
    ({"version": 1, "routes": [{"name": "a", "kill_swich": True}]},
     "routes[0].kill_swich", "unknown field `kill_swich`"),
    ({"version": 1, "routes": [{"name": "a", "match": {"path": {"regex": "/orders/(["}}}]},
     "routes[0].match.path.regex", "bad regex"),
    ({"version": 2, "routes": []}, "version", "unsupported version 2"),
], ids=["unknown-field", "bad-regex", "wrong-version"])
def test_invalid_policy_fails_closed_and_names_the_field(guard_stack, policy, field, problem):
    stack = guard_stack(policy=policy)
    for path in ("/orders/v0/orders/1", "/catalog/1"):
        r = stack.request("GET", path)
        assert 500 <= r.status < 600, f"{path} must fail closed, got {r.status}"
    assert stack.service.requests == [], "nothing may pass while the policy is invalid"
    lines = [l for l in stack.envoy.plugin_lines() if "invalid policy" in l]
    assert lines, stack.envoy.log_tail()
    assert f"field `{field}`" in lines[0] and problem in lines[0], lines[0]


def replace_policy(stack, policy, staging_dir):
    """What an operator does: write the new ECDS file beside the old one, mv it over
    (for both filters: dpp_guard and the upstream guard read the same policy)."""
    import yaml

    for key in ("DPP_GUARD_ECDS", "DPP_UPSTREAM_GUARD_ECDS"):
        ecds = stack.values()[key]
        doc = yaml.safe_load(ecds.read_text())
        doc["resources"][0]["typed_config"]["config"]["configuration"]["value"] = policy_text(policy)
        staged = staging_dir / "staged.ecds.yaml"
        staged.write_text(yaml.safe_dump(doc))
        staged.rename(ecds)


def wait_for(predicate, seconds=10.0):
    import time

    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.2)
    return predicate()


def test_policy_fix_is_applied_without_restart(guard_stack, tmp_path):
    """ECDS delivery: an invalid policy fails closed; a corrected file, moved into
    place, is applied by the running Envoy."""
    stack = guard_stack(policy={"version": 1, "routes": [{"name": "a", "bogus": 1}]})
    assert stack.request("GET", "/catalog/1").status == 500
    replace_policy(stack, POLICY, tmp_path)
    assert wait_for(lambda: stack.request("GET", "/catalog/1").status == 200)
    assert stack.request("GET", "/mws/x").status == 503


def test_invalid_update_keeps_the_last_valid_policy(guard_stack, tmp_path):
    stack = guard_stack(policy=POLICY)
    replace_policy(stack, {"version": 1, "routes": [{"name": "x", "kill_swich": True}]}, tmp_path)
    assert wait_for(lambda: any("kill_swich" in l for l in stack.envoy.plugin_lines()))
    # Still enforcing the previous policy, and still serving.
    assert stack.request("GET", "/mws/x").status == 503
    assert stack.request("GET", "/catalog/1").status == 200
    assert stack.envoy.stats().get("extension_config_discovery.http_filter.dpp_guard.config_fail", 0) >= 1


def test_route_name_and_host_come_from_envoy(guard_stack):
    """`route_name` follows Envoy's own routing (xds.route_name); `host` the :authority."""
    stack = guard_stack(policy={"version": 1, "routes": [
        {"name": "by-envoy-route", "match": {"route_name": "service", "host": "*.example.com"},
         "kill_switch": True},
        {"name": "other-envoy-route", "match": {"route_name": "not-this-one"}, "kill_switch": True},
    ]})
    assert stack.request("GET", "/x", host="api.example.com:8443").status == 503
    assert stack.request("GET", "/x", host="localhost").status == 200
    assert len(stack.service.requests) == 1
