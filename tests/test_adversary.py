"""The relay between the two Envoys as the adversary (issue 12,
docs/threat-model.md).

    client -> Envoy A (hop-a-encrypt) -> relay (adversary) -> Envoy B (hop-b-decrypt) -> service

The relay rewrites the path of the request it forwards to Envoy B into
every spelling a lenient service still reads as the order's buyer-info
path (case folded, dot segments removed, slashes merged, decoded once or
twice, `\\` read as `/`, `;params` stripped, trailing dots dropped). The
service serves the order for every such spelling, as many backends do. Each
request must be refused by Envoy B, or its response sealed: no PII value in
clear at the relay, ever.

Run twice: with the shipped configuration (Envoy normalises paths in front
of dpp_guard) and with Envoy's normalisation settings removed, where
dpp_guard alone must hold.
"""
from __future__ import annotations

import json
import re
import subprocess
import time
from urllib.parse import unquote

import pytest

from support.paths import ROOT
from support.sp_api import GET_ORDER_BUYER_INFO, ORDER_ID, OPERATIONS, leaks, pii_values
from support.twohop import BOOTSTRAP, TwoHop, keygen
from support.upstream import ReceivedRequest, ScriptedResponse

CLI = ROOT / "target" / "debug" / "dpp-guard"
BUYER_INFO_PATH = f"/orders/v0/orders/{ORDER_ID}/buyerInfo"
REST = f"v0/orders/{ORDER_ID}/buyerInfo"

# Every spelling the relay tries, by what it exercises. The first seven are
# the issue's; the rest are added.
SPELLINGS = {
    "capital": f"/Orders/{REST}",
    "double-slash": f"//orders/{REST}",
    "dot-dot": f"/x/../orders/{REST}",
    "dot": f"/./orders/{REST}",
    "encoded-unreserved": f"/%6frders/{REST}",
    "upper-case": f"/ORDERS/{REST.upper()}",
    "encoded-slash": f"/orders%2f{REST}",
    "encoded-slash-upper": f"/orders%2F{REST.replace('/', '%2F')}",
    "encoded-backslash": f"/orders%5c{REST}",
    "encoded-dot-dot": f"/x/%2e%2e/orders/{REST}",
    "encoded-dot-dot-upper": f"/x/%2E%2E/orders/{REST}",
    "mixed-dot-dot": f"/x/.%2e/orders/{REST}",
    "double-encoded-dot-dot": f"/x/%252e%252e/orders/{REST}",
    "backslash": "/orders\\" + REST.replace("/", "\\"),
    "path-parameter": f"/orders;jsessionid=1/{REST}",
    "encoded-semicolon": f"/orders%3bx/{REST}",
    "trailing-dot": f"/orders./{REST}",
    "trailing-encoded-space": f"/orders%20/{REST}",
    "long-s": f"/order%C5%BF/{REST}",
    "everything": f"/./ORDERS//v0/./x/../orders/{ORDER_ID}/buyerInfo",
    "trailing-dot-segment": f"/orders/{REST}/.",
    # Not the orders route at all: a path the service also serves PII on.
    "unlisted-route": f"/legacy/buyerInfo/{ORDER_ID}",
}


def lenient(path: str) -> str:
    """How a forgiving service reads a path: decoded (twice), `\\` as `/`,
    `;params` stripped, dot segments removed, empty segments merged,
    trailing dots and spaces dropped, Unicode case folded."""
    p = path.split("?", 1)[0]
    for _ in range(3):
        p = unquote(p)
    p = p.replace("\\", "/")
    out: list[str] = []
    for seg in p.split("/"):
        seg = seg.split(";", 1)[0].rstrip(". ") if seg not in (".", "..") else seg
        if seg == "..":
            if out:
                out.pop()
        elif seg not in ("", "."):
            out.append(seg)
    return ("/" + "/".join(out)).casefold()


SERVED = {lenient(path): doc for path, doc in OPERATIONS.values()}
SERVED[lenient(f"/legacy/buyerInfo/{ORDER_ID}")] = GET_ORDER_BUYER_INFO


def service(req: ReceivedRequest) -> ScriptedResponse:
    """The trusted service: the order for every spelling it can read."""
    doc = SERVED.get(lenient(req.path))
    if doc is None:
        return ScriptedResponse(status=404, body=b'{"error":"not found"}')
    return ScriptedResponse(headers={"content-type": "application/json"},
                            body=json.dumps(doc).encode())


def test_the_lenient_service_reads_every_spelling_as_the_order():
    """Otherwise the relay's attempts would prove nothing."""
    for name, spelling in SPELLINGS.items():
        want = lenient(f"/legacy/buyerInfo/{ORDER_ID}" if name == "unlisted-route" else BUYER_INFO_PATH)
        assert lenient(spelling) == want, name
        assert SERVED[lenient(spelling)] is GET_ORDER_BUYER_INFO


def events(envoy, kind: str) -> list[dict]:
    return [json.loads(l.split("dpp_event ", 1)[1]) for l in envoy.plugin_lines()
            if "dpp_event " in l and f'"event":"{kind}"' in l]


def sealed_lines(stack, count: int, timeout: float = 10.0) -> list[str]:
    """The access records Envoy wrote, once there are `count` (Envoy writes
    each after its stream ends)."""
    deadline = time.monotonic() + timeout
    while True:
        lines = [l for l in stack.access_log().splitlines() if l.startswith('{"dpp_access":')]
        if len(lines) >= count or time.monotonic() > deadline:
            return lines
        time.sleep(0.1)


def without_envoy_normalisation(tmp_path):
    """envoy/dpp-guard-fields.yaml without normalize_path, merge_slashes and
    path_with_escaped_slashes_action: dpp_guard is on its own."""
    text = BOOTSTRAP.read_text()
    stripped = re.sub(r"^\s*(normalize_path|merge_slashes|path_with_escaped_slashes_action):.*\n", "",
                      text, flags=re.M)
    assert stripped.count("\n") == text.count("\n") - 3, "the shipped bootstrap sets all three"
    out = tmp_path / "dpp-guard-fields-unnormalised.yaml"
    out.write_text(stripped)
    return out


@pytest.fixture(params=["shipped", "dpp_guard-alone"])
def adversary(request, pki, tmp_path, envoys):
    bootstrap_b = BOOTSTRAP if request.param == "shipped" else without_envoy_normalisation(tmp_path)
    hop = TwoHop(pki, tmp_path / "hop", keys_a=keygen("k1"), service=service, bootstrap_b=bootstrap_b)
    try:
        hop.start()
    finally:
        envoys.extend(hop.envoys())
    yield request.param, hop
    hop.stop()


def test_no_path_spelling_gets_pii_past_the_relay(adversary):
    mode, hop = adversary
    doc = GET_ORDER_BUYER_INFO
    pii = pii_values(doc)
    outcomes = {}
    for name, spelling in SPELLINGS.items():
        hop.relay_path = lambda _path, s=spelling: s
        served_before = len(hop.service.requests)
        r = hop.request("GET", BUYER_INFO_PATH)
        exchange = hop.relay_log[-1]
        assert exchange.request.path == spelling
        seen = exchange.raw()
        assert leaks(seen, doc) == [], f"{mode} {name}: the relay saw PII in clear"
        if exchange.status == 200:
            # Sealed: every PII field travels as an envelope, and the client
            # behind Envoy A still gets its order.
            assert seen.count(b'"dpg1.k1.') >= len(pii) - 1, f"{mode} {name}: 200 but not sealed"
            assert r.status == 200 and r.json() == doc, f"{mode} {name}"
            outcomes[name] = "sealed"
        else:
            # Refused by Envoy B (dpp_guard or Envoy's own path checks): the
            # service never saw the request.
            assert exchange.status in (400, 404), f"{mode} {name}: {exchange.status} {exchange.response_body!r}"
            assert len(hop.service.requests) == served_before, f"{mode} {name} reached the service"
            outcomes[name] = exchange.status
    assert leaks(hop.relay_record(), doc) == []

    # The shipped hop configs pass the log key: sealed records that
    # verify-log accepts, and no log_key_unavailable warning, at both hops.
    for name, stack in (("a", hop.a), ("b", hop.b)):
        assert not events(stack.envoy, "log_key_unavailable"), name
        lines = sealed_lines(stack, len(SPELLINGS))
        assert lines and all('"mac":"' in l for l in lines), name
        log = hop.a.workdir.parent / f"access-{name}.log"
        log.write_text("\n".join(lines) + "\n")
        r = subprocess.run([str(CLI), "verify-log", "--from-start", str(log)], capture_output=True, text=True,
                           env={"DPP_GUARD_LOG_KEY": hop.log_keys[name]})
        assert r.returncode == 0, r.stdout + r.stderr

    envoy_b = hop.b.envoy
    # Spellings that are the orders route in normal form, up to case, are
    # served, sealed: refusing them would not be needed.
    assert outcomes["capital"] == outcomes["upper-case"] == "sealed", outcomes
    # Default deny at hop B: the unlisted route the service also serves.
    assert outcomes["unlisted-route"] == 404, outcomes
    assert events(envoy_b, "unmatched_request")
    # Spellings with no single meaning never reach the service.
    print(f"\n{mode}: {outcomes}")
    # Spellings with no single meaning never reach the service (a raw `\`
    # is one Envoy's normalize_path turns into `/` first).
    for name in ("encoded-slash", "encoded-backslash", "path-parameter", "double-encoded-dot-dot",
                 "trailing-dot", "long-s", "encoded-semicolon"):
        assert outcomes[name] in (400, 404), (name, outcomes)
    if mode == "dpp_guard-alone":
        # Without Envoy's normalisation every other spelling reaches
        # dpp_guard as sent: it refuses each with 400 ambiguous_path.
        for name, outcome in outcomes.items():
            if name not in ("capital", "upper-case", "unlisted-route"):
                assert outcome == 400, (name, outcomes)
        details = {e.get("detail") for e in events(envoy_b, "ambiguous_path")}
        assert {"not_normal_form", "encoded_slash", "path_parameter", "double_encoded",
                "trailing_dot_or_space"} <= details, details


def test_normalize_mode_rewrites_the_path_the_service_sees(guard_stack, tmp_path):
    """requests.non_normal_path: normalize, on an Envoy that does not
    normalise: dpp_guard decides on the normal form and the service gets it."""
    from support.paths import ENVOY_DIR

    text = (ENVOY_DIR / "dpp-guard.yaml").read_text()
    stripped = re.sub(r"^\s*(normalize_path|merge_slashes|path_with_escaped_slashes_action):.*\n", "",
                      text, flags=re.M)
    bootstrap = tmp_path / "dpp-guard-unnormalised.yaml"
    bootstrap.write_text(stripped)
    policy = {"version": 1, "requests": {"non_normal_path": "normalize"},
              "routes": [{"name": "orders", "match": {"path": {"prefix": "/orders/"}}, "no_store": True}]}
    stack = guard_stack(policy=policy, bootstrap=bootstrap)
    r = stack.request("GET", "//x/../Orders/v0/./%6frders?Marketplace=a/../b")
    assert r.status == 200, r.body
    assert r.headers.get("cache-control") == "no-store", "decided on the orders route"
    assert stack.service.requests[-1].path == "/Orders/v0/orders?Marketplace=a/../b"
    # What has no single meaning is refused in this mode too.
    r = stack.request("GET", "/orders%2fv0/orders")
    assert r.status == 400 and r.json()["error"] == "ambiguous_path"
    assert len(stack.service.requests) == 1
