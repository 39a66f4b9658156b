"""Field encryption end to end, on the compiled .wasm in real Envoys.

The two-Envoy topology (tests/support/twohop.py): client -> Envoy A
(encrypts request PII) -> untrusted relay over TLS that records everything
-> Envoy B (decrypts) -> trusted service, and the response path back.
"""
from __future__ import annotations

import copy
import json

import pytest

from support.sp_api import OPERATIONS, leaks, pii_values
from support.stack import GuardStack
from support.twohop import BOOTSTRAP, HOP_A, HOP_B, TwoHop, keygen
from support.upstream import ReceivedRequest, ScriptedResponse

JSON = {"content-type": "application/json"}


def service(req: ReceivedRequest) -> ScriptedResponse:
    """The trusted service: GET answers the operation's payload, a body is echoed back."""
    if req.body:
        return ScriptedResponse(headers=dict(JSON), body=req.body)
    for path, doc in OPERATIONS.values():
        if req.path == path:
            return ScriptedResponse(headers=dict(JSON), body=json.dumps(doc, indent=2).encode())
    return ScriptedResponse(status=404, body=b'{"error":"not found"}')


@pytest.fixture
def two_hop(pki, tmp_path, envoys):
    started: list[TwoHop] = []

    def make(name: str = "hop", **kw) -> TwoHop:
        hop = TwoHop(pki, tmp_path / f"{name}{len(started)}", **kw)
        started.append(hop)
        try:
            hop.start()
        finally:
            envoys.extend(hop.envoys())
        return hop

    yield make
    for hop in started:
        hop.stop()


def upstream_requests(stack) -> int:
    """Requests Envoy started towards the service (headers included)."""
    return stack.envoy.stats().get("cluster.service.upstream_rq_total", 0)


def events(envoy, kind: str) -> list[dict]:
    out = []
    for line in envoy.plugin_lines():
        if "dpp_event " in line:
            event = json.loads(line.split("dpp_event ", 1)[1])
            if event["event"] == kind:
                out.append(event)
    return out


@pytest.mark.parametrize("op", list(OPERATIONS))
def test_sp_api_payload_crosses_the_untrusted_hop_encrypted_both_ways(two_hop, op, request):
    hop = two_hop(keys_a=keygen("k1"), service=service)
    path, doc = OPERATIONS[op]
    pii = pii_values(doc)
    assert pii, "the payload must carry PII for this test to mean anything"

    # Response path: the service's PII is encrypted by B, decrypted by A.
    r = hop.request("GET", path)
    assert r.status == 200, r.body
    assert r.json() == doc, "the client gets the original back"
    # Request path: the client's PII is encrypted by A, decrypted by B;
    # the service echoes it, so it also travels back encrypted.
    sent = json.dumps(doc).encode()
    r = hop.request("POST", path, body=sent, headers=JSON)
    assert r.status == 200, r.body
    assert r.json() == doc
    assert [json.loads(q.body) for q in hop.service.requests if q.body] == [doc], \
        "the trusted service receives JSON equal to the original"

    record = hop.relay_record()
    assert leaks(record, doc) == [], "the relay stored PII in plaintext"
    assert record.count(b'"dpg1.k1.') >= 2 * len(pii) - 2, "PII fields travel as envelopes"
    # Only PII is encrypted: the order id and the rest stay readable.
    assert b'"AmazonOrderId": "902-3159896-1390916"' in record or b'"AmazonOrderId":"902-3159896-1390916"' in record
    for exchange in hop.relay_log:
        assert exchange.response_headers.get("cache-control") == "no-store"
    # Logs of both Envoys carry no PII either.
    for envoy in hop.envoys():
        assert leaks(envoy.log().encode(), doc) == []


def test_fields_bootstrap_is_the_base_bootstrap_plus_the_hold_filters():
    """envoy/dpp-guard-fields.yaml must follow envoy/dpp-guard.yaml: same
    listener, clusters, upstream guard and access log, plus the two holds."""
    import re

    import yaml

    from support.paths import ENVOY_DIR

    def load(name):
        return yaml.safe_load(re.sub(r"\$\{[A-Z0-9_]+\}", "0", (ENVOY_DIR / name).read_text()))

    base, fields = load("dpp-guard.yaml"), load("dpp-guard-fields.yaml")
    hcm = fields["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"]
    names = [f["name"] for f in hcm["http_filters"]]
    assert names[names.index("dpp_guard") - 1] == "dpp_guard_response_hold"
    assert names[names.index("dpp_guard") + 1] == "dpp_guard_request_hold"
    hcm["http_filters"] = [f for f in hcm["http_filters"] if not f["name"].endswith("_hold")]
    assert fields == base


def test_rewrite_keeps_every_unselected_byte(two_hop):
    """Key order, white space and number spelling outside PII fields survive both hops."""
    body = (b'{ "payload" : {"Z_last_first": 1.50E+3,\n  "BuyerEmail": "x9z8@example.com",'
            b'   "AmazonOrderId":"1", "n": [ 1 , -0.0 ] } }')
    hop = two_hop(keys_a=keygen("k1"), service=service)
    r = hop.request("POST", "/orders/v0/orders/1/buyerInfo", body=body, headers=JSON)
    assert r.status == 200
    assert r.body == body, "byte for byte back at the client"
    (seen,) = hop.service.requests
    assert seen.body == body, "byte for byte at the service"
    (relayed,) = hop.relay.requests
    assert b"x9z8@example.com" not in relayed.body
    prefix, rest = relayed.body.split(b'"BuyerEmail": "dpg1.k1.', 1)
    assert prefix == b'{ "payload" : {"Z_last_first": 1.50E+3,\n  '
    assert rest.split(b'"', 1)[1] == b',   "AmazonOrderId":"1", "n": [ 1 , -0.0 ] } }'
    # The access records say what each hop did, and carry no PII.
    a_records = _records_when_flushed(hop.a, 1)
    b_records = _records_when_flushed(hop.b, 1)
    assert [r["actions"]["fields_encrypted"] for r in a_records] == [1]
    assert [r["actions"]["fields_decrypted"] for r in a_records] == [1]  # the echoed response
    assert [r["actions"]["fields_decrypted"] for r in b_records] == [1]
    assert [r["actions"]["fields_encrypted"] for r in b_records] == [1]
    for log in (hop.a.access_log(), hop.b.access_log()):
        assert "x9z8@example.com" not in log


def test_deterministic_mode_and_blind_index_through_both_hops(two_hop):
    """Equality joins on the untrusted side: equal e-mails give equal envelopes
    (deterministic), phones keep random envelopes with equal blind indexes."""
    rules = [
        {"direction": "request", "selectors": ["$.payload.BuyerEmail"], "mode": "deterministic", "context": "t1"},
        {"direction": "request", "selectors": ["$..Phone"], "blind_index": True, "context": "t1"},
    ]
    policy_a = {"version": 1, "keys": {"env": "DPP_GUARD_KEYS"}, "routes": [
        {"name": "orders", "match": {"path": {"prefix": "/orders/"}}, "encrypt": rules}]}
    policy_b = {"version": 1, "keys": {"env": "DPP_GUARD_KEYS"}, "routes": [
        {"name": "orders", "match": {"path": {"prefix": "/orders/"}},
         "decrypt": [{"direction": "request", "selectors": ["$.payload.BuyerEmail", "$..Phone"], "context": "t1"}]}]}
    keys = keygen("k1")
    hop = two_hop(keys_a=keys, service=service, policy_a=policy_a, policy_b=policy_b)
    doc = {"payload": {"BuyerEmail": "same@example.com", "Address": {"Phone": "+1 206-555-0147"}}}
    for _ in range(2):
        r = hop.request("POST", "/orders/v0/orders/1", body=json.dumps(doc), headers=JSON)
        assert r.status == 200, r.body
    relayed = [q.json()["payload"] for q in hop.relay.requests]
    assert relayed[0]["BuyerEmail"] == relayed[1]["BuyerEmail"]
    assert relayed[0]["BuyerEmail"].startswith("dpg1.k1.")
    phones = [p["Address"]["Phone"] for p in relayed]
    assert phones[0] != phones[1], "random mode stays randomized"
    assert [p.count(".") for p in phones] == [3, 3], "envelope with a blind index"
    assert phones[0].rsplit(".", 1)[1] == phones[1].rsplit(".", 1)[1], "equal blind index"
    assert [q.json() for q in hop.service.requests] == [doc, doc]
    # Keys are only in Envoy's environment: the admin endpoint shows the name, not the key.
    dump = hop.a.envoy.admin_get("/config_dump")
    assert "DPP_GUARD_KEYS" in dump and keys.split("=", 1)[1] not in dump


def test_key_rotation(two_hop):
    k1, k2 = keygen("k1"), keygen("k2")
    path, doc = OPERATIONS["getOrderBuyerInfo"]
    body = json.dumps(doc).encode()

    # 1. Data under k1.
    hop = two_hop("k1", keys_a=k1, service=service)
    assert hop.request("POST", path, body=body, headers=JSON).status == 200
    (under_k1,) = [q.body for q in hop.relay.requests]
    assert b'"dpg1.k1.' in under_k1 and b'"dpg1.k2.' not in under_k1
    hop.stop()

    # 2. k2 added and promoted on both hops: k1 data still decrypts, new data uses k2.
    hop = two_hop("k2", keys_a=f"{k1} {k2} primary=k2", service=service)
    r = hop.b.request("POST", path, body=under_k1, headers=JSON)
    assert r.status == 200, r.body
    assert json.loads(hop.service.requests[-1].body) == doc
    assert hop.request("POST", path, body=body, headers=JSON).status == 200
    under_k2 = hop.relay.requests[-1].body
    assert b'"dpg1.k2.' in under_k2 and b'"dpg1.k1.' not in under_k2
    hop.stop()

    # 3. k1 removed: its data fails closed at B, k2 data still opens.
    hop = two_hop("rm", keys_a=f"{k2}", service=service)
    r = hop.b.request("POST", path, body=under_k1, headers=JSON)
    assert r.status == 502
    assert r.json()["error"] == "envelope_rejected"
    assert hop.service.requests == [], "nothing reaches the service"
    (event,) = events(hop.b.envoy, "envelope_rejected")
    assert event["detail"] == "request: unknown_key"
    assert hop.b.request("POST", path, body=under_k2, headers=JSON).status == 200
    assert json.loads(hop.service.requests[-1].body) == doc


# --- failure modes, each with its status, event and nothing forwarded ------

SMALL = 2048


def hop_policy(direction_rules: dict) -> dict:
    return {"version": 1, "keys": {"env": "DPP_GUARD_KEYS"}, "routes": [
        {"name": "orders", "match": {"path": {"prefix": "/orders/"}}, **direction_rules,
         "body": {"max_bytes": SMALL}}]}


POLICY_A = hop_policy({
    "encrypt": [{"direction": "request", "preset": "sp-api-orders", "context": "sp-api-orders"}],
    "decrypt": [{"direction": "response", "preset": "sp-api-orders", "context": "sp-api-orders"}]})
POLICY_B = hop_policy({
    "decrypt": [{"direction": "request", "preset": "sp-api-orders", "context": "sp-api-orders"}],
    "encrypt": [{"direction": "response", "preset": "sp-api-orders", "context": "sp-api-orders"}]})

BUYER = json.dumps(OPERATIONS["getOrderBuyerInfo"][1]).encode()

REQUEST_FAILURES = [
    # id, body, headers, status, event
    ("too-large", b'{"payload":{"BuyerEmail":"' + b"x" * SMALL + b'"}}', JSON, 413, "body_too_large"),
    ("malformed-json", b'{"payload":{"BuyerEmail":"jq7f2k9x@example.com"', JSON, 400, "malformed_body"),
    ("not-json", BUYER, {"content-type": "text/plain"}, 415, "unsupported_content_type"),
    ("no-content-type", BUYER, {}, 415, "unsupported_content_type"),
    ("gzip", BUYER, {**JSON, "content-encoding": "gzip"}, 415, "unsupported_content_encoding"),
]


def acknowledge(req: ReceivedRequest) -> ScriptedResponse:
    """A service that answers without PII (echoing the request's envelopes
    back would be a request envelope in a response: refused by design)."""
    return ScriptedResponse(headers=dict(JSON), body=b'{"received":true}')


def test_request_failures_fail_closed(guard_stack, pki):
    stack = guard_stack(policy=POLICY_A, ecds=HOP_A, bootstrap=BOOTSTRAP, env={"DPP_GUARD_KEYS": keygen("k1")},
                        responder=acknowledge)
    for name, body, headers, status, kind in REQUEST_FAILURES:
        r = stack.request("POST", "/orders/v0/orders/1/buyerInfo", body=body, headers=headers)
        assert r.status == status, (name, r.status, r.body)
        assert r.headers["content-type"] == "application/json"
        assert set(r.json()) == {"error", "message"}, name
        assert stack.service.requests == [], f"{name}: the upstream must receive nothing"
        assert upstream_requests(stack) == 0, f"{name}: not even request headers went upstream"
        (event,) = events(stack.envoy, kind)[-1:]
        assert (event["route"], event["method"], event["detail"]) == ("orders", "POST", "request"), name
    assert leaks(stack.envoy.log().encode(), OPERATIONS["getOrderBuyerInfo"][1]) == []
    # A good request on the same stack goes through, encrypted.
    r = stack.request("POST", "/orders/v0/orders/1/buyerInfo", body=BUYER,
                      headers={**JSON, "accept-encoding": "gzip, br"})
    assert r.status == 200 and r.json() == {"received": True}
    (seen,) = stack.service.requests
    assert upstream_requests(stack) == 1, "the stat counts what reached the service"
    assert b"jq7f2k9x@" not in seen.body
    assert "accept-encoding" not in seen.headers, "a compressed response could not be decrypted"


def test_streamed_body_over_the_limit_is_refused_in_the_body_phase(guard_stack):
    """No content-length to check up front: the limit holds while buffering."""
    import http.client
    import ssl

    stack = guard_stack(policy=POLICY_A, ecds=HOP_A, bootstrap=BOOTSTRAP, env={"DPP_GUARD_KEYS": keygen("k1")},
                        responder=service)
    chunks = [b'{"payload":{"BuyerEmail":"jq7f2k9x@example.com","pad":"'] + [b"x" * 512] * 8 + [b'"}}']
    conn = http.client.HTTPSConnection("127.0.0.1", stack.port, timeout=15,
                                       context=ssl.create_default_context(cafile=str(stack.pki.ca_cert)))
    try:
        conn.request("POST", "/orders/v0/orders/1/buyerInfo", body=iter(chunks), encode_chunked=True,
                     headers={"host": "localhost", **JSON, "transfer-encoding": "chunked"})
        r = conn.getresponse()
        status, body = r.status, r.read()
    finally:
        conn.close()
    assert status == 413, body
    assert json.loads(body)["error"] == "body_too_large"
    assert stack.service.requests == [] and upstream_requests(stack) == 0
    (event,) = events(stack.envoy, "body_too_large")
    assert event["detail"] == "request"


def envelope_of(body: bytes, member: str) -> str:
    return json.loads(body)["payload"][member]


RESPONSE_FAILURES = [
    ("too-large", 200, JSON, b'{"payload":{"x":"' + b"y" * SMALL + b'"}}', "body_too_large", "response"),
    ("malformed-json", 200, JSON, b'{"payload":', "malformed_body", "response"),
    ("not-json", 200, {"content-type": "text/html"}, b"<p>hi</p>", "unsupported_content_type", "response"),
    ("gzip", 200, {**JSON, "content-encoding": "gzip"}, b"\x1f\x8b\x08\x00", "unsupported_content_encoding", "response"),
    ("plain-value", 200, JSON, b'{"payload":{"BuyerEmail":"injected@example.com"}}', "envelope_rejected",
     "response: not_an_envelope"),
]


def test_response_failures_fail_closed_with_502(guard_stack):
    stack = guard_stack(policy=POLICY_A, ecds=HOP_A, bootstrap=BOOTSTRAP, env={"DPP_GUARD_KEYS": keygen("k1")})
    for name, status, headers, body, kind, detail in RESPONSE_FAILURES:
        stack.service.respond_with(ScriptedResponse(status=status, headers=dict(headers), body=body))
        r = stack.request("GET", "/orders/v0/orders/1/buyerInfo")
        assert r.status == 502, (name, r.status, r.body)
        assert r.json()["error"] in ("body_too_large", "malformed_json", "unsupported_content_type",
                                     "unsupported_content_encoding", "envelope_rejected"), name
        assert body not in r.body, f"{name}: nothing of the refused response is forwarded"
        (event,) = events(stack.envoy, kind)[-1:]
        assert (event["route"], event["detail"]) == ("orders", detail), name


def test_tampered_truncated_and_unknown_key_envelopes_fail_closed_at_b(guard_stack, tmp_path, pki):
    k1 = keygen("k1")
    # Produce genuine k1 envelopes with Envoy A's policy through the CLI (same code as the filter).
    a_policy = tmp_path / "a.json"
    a_policy.write_text(json.dumps(POLICY_A))
    import os
    import subprocess

    from support.twohop import CLI
    enc = subprocess.run([str(CLI), "encrypt", "--policy", str(a_policy), "--route", "orders",
                          "--direction", "request", "-"], input=BUYER, capture_output=True,
                         env={**os.environ, "DPP_GUARD_KEYS": k1}, check=True).stdout
    email = envelope_of(enc, "BuyerEmail")
    assert email.startswith("dpg1.k1.")

    def with_email(value: str) -> bytes:
        return enc.replace(email.encode(), value.encode())

    flip = "A" if email[20] != "A" else "B"
    cases = [
        ("tampered", with_email(email[:20] + flip + email[21:]), "envelope_authentication_failed"),
        ("truncated", with_email(email[:-6]), None),
        ("unknown-key", with_email(email.replace("dpg1.k1.", "dpg1.k7.", 1)), "unknown_key"),
        ("moved-to-another-field", enc.replace(envelope_of(enc, "BuyerName").encode(), email.encode()),
         "envelope_authentication_failed"),
        ("plain-value", with_email("jq7f2k9x@marketplace.example.com"), "not_an_envelope"),
    ]
    stack = guard_stack(policy=POLICY_B, ecds=HOP_B, bootstrap=BOOTSTRAP, env={"DPP_GUARD_KEYS": k1}, responder=service)
    for name, body, code in cases:
        r = stack.request("POST", "/orders/v0/orders/1/buyerInfo", body=body, headers=JSON)
        assert r.status == 502, (name, r.status, r.body)
        assert r.json()["error"] == "envelope_rejected", name
        assert stack.service.requests == [], f"{name}: the service must receive nothing"
        assert upstream_requests(stack) == 0, f"{name}: not even request headers went upstream"
        (event,) = events(stack.envoy, "envelope_rejected")[-1:]
        assert event["severity"] == "high"
        if code:
            assert event["detail"] == f"request: {code}", name
    # The genuine document decrypts.
    r = stack.request("POST", "/orders/v0/orders/1/buyerInfo", body=enc, headers=JSON)
    assert r.status == 200
    assert json.loads(stack.service.requests[-1].body) == json.loads(BUYER)


def test_missing_keyring_stops_the_plugin_and_names_the_field(guard_stack):
    stack = guard_stack(policy=POLICY_A, ecds=HOP_A, bootstrap=BOOTSTRAP, env={})
    r = stack.request("POST", "/orders/v0/orders/1/buyerInfo", body=BUYER, headers=JSON)
    assert r.status == 500
    assert stack.service.requests == []
    lines = [l for l in stack.envoy.plugin_lines() if "invalid policy" in l]
    assert lines and "field `keys.env`" in lines[0] and "DPP_GUARD_KEYS" in lines[0], lines


def test_inline_keys_need_the_testing_flag_and_warn_at_every_start(guard_stack):
    entry = keygen("t1")
    inline = {"version": 1, "keys": {"inline": entry}, "routes": [
        {"name": "orders", "match": {"path": {"prefix": "/orders/"}},
         "encrypt": [{"direction": "request", "selectors": ["$..BuyerEmail"]}]}]}
    refused = guard_stack(policy=inline)
    assert refused.request("GET", "/orders/1").status == 500
    assert any("field `keys.inline`" in l for l in refused.envoy.plugin_lines())
    assert entry.split("=", 1)[1] not in refused.envoy.log(), "key text never logged"

    inline["keys"]["allow_inline_keys_for_testing_only"] = True
    stack = guard_stack(policy=inline)
    r = stack.request("POST", "/orders/1", body=BUYER, headers=JSON)
    assert r.status == 200
    assert b"jq7f2k9x@" not in stack.service.requests[0].body
    warnings = events(stack.envoy, "inline_keys_in_use")
    assert warnings and all(w["severity"] == "warning" for w in warnings)
    assert entry.split("=", 1)[1] not in stack.envoy.log()


def _records_when_flushed(stack, n: int, seconds: float = 15.0) -> list[dict]:
    """Envoy writes its access log file on a flush timer (100 ms in the tests):
    poll, bounded, until `n` records are there."""
    import time

    deadline = time.monotonic() + seconds
    while True:
        records = [json.loads(l) for l in stack.access_log().splitlines() if l.strip()]
        if len(records) >= n or time.monotonic() > deadline:
            return records
        time.sleep(0.05)


# --- the relay as the adversary (issue 12): names, direction, records -------

CASE_FOLDED = [
    # Go's encoding/json and ASP.NET bind each of these to the PII field.
    ("lower-camel", {"payload": {"AmazonOrderId": "1", "buyerEmail": "jq7f2k9x@example.com"}}),
    ("upper", {"PAYLOAD": {"AmazonOrderId": "1", "BuyerEmail": "jq7f2k9x@example.com"}}),
    ("long-s", {"payload": {"AmazonOrderId": "1", "\u017fhippingAddress": {"City": "Seattle-jq7f2k9x"}}}),
    ("kelvin", {"order": {"orderId": "1", "orderItems": [
        {"fulfillment": {"pac\u212aing": {"giftOption": {"giftMessage": "Love, jq7f2k9x"}}}}]}}),
    ("beside-the-real-one", {"payload": {"AmazonOrderId": "1", "buyeremail": "jq7f2k9x@example.com",
                                         "BuyerEmail": "other@example.com"}}),
]


def test_case_folded_member_names_are_refused_at_hop_a(two_hop):
    hop = two_hop(keys_a=keygen("k1"), service=service)
    for name, doc in CASE_FOLDED:
        r = hop.request("POST", "/orders/v0/orders/1/buyerInfo", body=json.dumps(doc), headers=JSON)
        assert r.status == 400, (name, r.status, r.body)
        assert r.json()["error"] == "ambiguous_member", name
    assert hop.relay.requests == [], "nothing reached the relay"
    assert b"jq7f2k9x" not in hop.relay_record()
    refused = events(hop.a.envoy, "ambiguous_member")
    assert len(refused) == len(CASE_FOLDED)
    assert all(e["severity"] == "high" and e["detail"] == "request" for e in refused)
    # The exact spelling still goes through, sealed.
    path, doc = OPERATIONS["getOrderBuyerInfo"]
    r = hop.request("POST", path, body=json.dumps(doc), headers=JSON)
    assert r.status == 200 and r.json() == doc


def test_request_envelope_swapped_into_a_response_is_refused_at_hop_a(two_hop):
    """The relay keeps the envelope A sealed for a request and hands it back in
    the response to a later GET of the same order: same field, context and
    order id, other direction."""
    captured: dict[str, str] = {}

    def relay(direction: str, path: str, body: bytes) -> bytes:
        doc = json.loads(body)
        if direction == "request":
            captured["email"] = doc["payload"]["BuyerEmail"]
        elif "email" in captured:
            assert doc["payload"]["BuyerEmail"] != captured["email"]
            doc["payload"]["BuyerEmail"] = captured["email"]
            return json.dumps(doc).encode()
        return body

    hop = two_hop(keys_a=keygen("k1"), service=service, tamper=relay)
    path, doc = OPERATIONS["getOrderBuyerInfo"]
    r = hop.request("POST", path, body=json.dumps(doc), headers=JSON)
    assert r.status == 502, "the echoed response already carries the request's envelope"
    assert captured["email"].startswith("dpg1.k1.")
    r = hop.request("GET", path)
    assert r.status == 502, r.body
    assert r.json()["error"] == "envelope_rejected"
    assert b"jq7f2k9x" not in r.body
    rejected = events(hop.a.envoy, "envelope_rejected")
    assert rejected and rejected[-1]["detail"] == "response: envelope_authentication_failed"


TWO_ORDERS = {"payload": {"Orders": [
    {"AmazonOrderId": "902-0000001-0000001", "BuyerInfo": {"BuyerEmail": "first-buyer@example.com"}},
    {"AmazonOrderId": "902-0000002-0000002", "BuyerInfo": {"BuyerEmail": "second-buyer@example.com"}},
]}}


def test_envelope_moved_to_another_order_is_refused(two_hop):
    """getOrders: the relay swaps the buyers' e-mail envelopes between the two
    orders (same path, same context); the shipped policy binds each to its
    order's AmazonOrderId, so A refuses the response."""
    swap = {"on": True}

    def relay(direction: str, path: str, body: bytes) -> bytes:
        if direction != "response" or not swap["on"]:
            return body
        doc = json.loads(body)
        orders = doc["payload"]["Orders"]
        a, b = (o["BuyerInfo"]["BuyerEmail"] for o in orders)
        assert a.startswith("dpg1.k1.") and b.startswith("dpg1.k1.")
        orders[0]["BuyerInfo"]["BuyerEmail"], orders[1]["BuyerInfo"]["BuyerEmail"] = b, a
        return json.dumps(doc).encode()

    def orders_service(req: ReceivedRequest) -> ScriptedResponse:
        return ScriptedResponse(headers=dict(JSON), body=json.dumps(TWO_ORDERS).encode())

    hop = two_hop(keys_a=keygen("k1"), service=orders_service, tamper=relay)
    r = hop.request("GET", "/orders/v0/orders")
    assert r.status == 502, r.body
    assert r.json()["error"] == "envelope_rejected"
    assert b"buyer@example.com" not in r.body
    (event,) = events(hop.a.envoy, "envelope_rejected")
    assert event["detail"] == "response: envelope_authentication_failed"
    # Untouched, the same response opens: the binding is per element.
    swap["on"] = False
    r = hop.request("GET", "/orders/v0/orders")
    assert r.status == 200 and r.json() == TWO_ORDERS
