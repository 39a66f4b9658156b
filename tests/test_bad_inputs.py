"""The bad-input catalogue, end to end on the compiled .wasm in a real Envoy.

Every row of the table in docs/reliability.md ("Bad-input catalogue") is a
`Case` below, run against one Envoy (HTTP/1.1 and HTTP/2 downstream, ALPN
on the listener) in front of an HTTP/1.1 TLS service, or against a second
Envoy whose service speaks only HTTP/2 (TLS, ALPN h2). For every case:

- the client gets the documented status (a JSON error body for the
  filter's own refusals), or the documented connection outcome;
- the filter raised exactly the documented security event (or none);
- the service received nothing it should not: no request at all for a
  refusal (not even headers), and never a PII value in plaintext;
- the next request on the same Envoy worker (concurrency 1) still works:
  a PII document is encrypted on the way up and decrypted on the way back.

The route encrypts the SP-API preset fields of requests and decrypts them
in responses (Envoy A of docs/envelope.md); the service answers requests on
protected paths with the document encrypted for the response direction
(made by the project's CLI with the same keys), so every good exchange
checks both directions.
"""
from __future__ import annotations

import gzip
import json
import os
import re
import subprocess
import time
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional, Union

import pytest

from support.h2 import H2Client, H2Upstream
from support.paths import ROOT
from support.reports import ENVOYS_KEY
from support.rawhttp import RawConnection
from support.sp_api import OPERATIONS, leaks
from support.stack import GuardStack
from support.twohop import BOOTSTRAP, CLI, HOP_A, keygen
from support.upstream import ReceivedRequest, ScriptedResponse

JSON = {"content-type": "application/json"}
MAX = 2048  # body.max_bytes of the catalogue's route
PATH = "/orders/v0/orders/902-3159896-1390916/buyerInfo"
DOC = OPERATIONS["getOrderBuyerInfo"][1]
BODY = json.dumps(DOC).encode()
POLICY = {"version": 1, "keys": {"env": "DPP_GUARD_KEYS"}, "routes": [
    {"name": "orders", "match": {"path": {"prefix": "/orders/"}},
     "encrypt": [{"direction": "request", "preset": "sp-api-orders", "context": "sp-api-orders"}],
     "decrypt": [{"direction": "response", "preset": "sp-api-orders", "context": "sp-api-orders"}],
     "body": {"max_bytes": MAX}},
    # The same rules with the default limit (1 MiB, Envoy's buffer limit too).
    {"name": "big", "match": {"path": {"prefix": "/big/"}},
     "encrypt": [{"direction": "request", "preset": "sp-api-orders", "context": "sp-api-orders"}],
     "decrypt": [{"direction": "response", "preset": "sp-api-orders", "context": "sp-api-orders"}]}]}
# Events the filter raises per request (start-up events are not counted).
REQUEST_EVENTS = {"body_too_large", "malformed_body", "unsupported_content_type",
                  "unsupported_content_encoding", "envelope_rejected", "encryption_failed",
                  "kill_switch_refusal", "ambiguous_member", "context_field_missing",
                  "ambiguous_path", "unmatched_request"}


@dataclass
class Observed:
    """What the client saw: a status, or how the exchange ended without one."""
    status: Union[int, str]
    body: bytes = b""
    headers: Optional[dict] = None


class Bench:
    """One Envoy with the catalogue's policy, its service and what to expect next."""

    def __init__(self, stack: GuardStack, response: bytes):
        self.stack = stack
        self.response = response  # DOC with its PII sealed for the response direction
        self.respond: Optional[ScriptedResponse] = None  # the next scripted response, if any

    @property
    def envoy(self):
        return self.stack.envoy

    @property
    def port(self) -> int:
        return self.stack.port

    @property
    def ca(self) -> Path:
        return self.stack.pki.ca_cert

    def service(self, req: ReceivedRequest) -> ScriptedResponse:
        if self.respond is not None:
            return self.respond
        if req.path.startswith(("/orders/", "/big/")):
            return ScriptedResponse(headers=dict(JSON), body=self.response)
        return ScriptedResponse(headers=dict(JSON), body=req.body or b'{"ok":true}')

    def upstream_total(self) -> int:
        return self.envoy.stats().get("cluster.service.upstream_rq_total", 0)

    def events(self) -> list[str]:
        out = []
        for line in self.envoy.plugin_lines():
            if "dpp_event " in line:
                kind = json.loads(line.split("dpp_event ", 1)[1])["event"]
                if kind in REQUEST_EVENTS:
                    out.append(kind)
        return out

    def encrypted_body(self) -> bytes:
        """DOC as the service sends it: PII sealed for the response."""
        return self.response

    def good_request_works(self) -> None:
        before = len(self.stack.service.requests)
        r = self.stack.request("POST", PATH, body=BODY, headers=JSON)
        assert r.status == 200, r.body
        assert r.json() == DOC, "the client gets its document back"
        seen = self.stack.service.requests[before:]
        assert len(seen) == 1 and leaks(seen[0].body, DOC) == [] and b'"dpg1.' in seen[0].body


@dataclass
class Case:
    id: str
    status: Union[int, str]  # HTTP status, or "closed" (no response: the client went away)
    event: Optional[str]
    upstream: str  # "nothing", "envelopes" (PII only as envelopes), "request" (no PII in it)
    run: Callable[[Bench], Observed]
    stack: str = "h1"  # "h1": HTTP/1.1 service; "h2": HTTP/2 service
    json_error: bool = True  # a refusal with an event answers the filter's JSON error body


def post(b: Bench, body: bytes, headers: Optional[dict] = None) -> Observed:
    r = b.stack.request("POST", PATH, body=body, headers=JSON if headers is None else headers)
    return Observed(r.status, r.body, r.headers)


def raw_chunked(b: Bench, pieces, trailers=None, pause=0.0, headers=None) -> Observed:
    with RawConnection(b.port, b.ca) as c:
        c.head("POST", PATH, {**(headers or JSON), "transfer-encoding": "chunked"})
        c.chunked(pieces, trailers=trailers, pause=pause)
        r = c.response()
    return Observed("closed" if r.closed else r.status, r.body, r.headers)


def raw_head(b: Bench, lines: list[str], payload: bytes = b"") -> Observed:
    """A request written line by line (repeated or conflicting headers)."""
    with RawConnection(b.port, b.ca) as c:
        c.send(("\r\n".join([f"POST {PATH} HTTP/1.1", "host: localhost"] + lines) + "\r\n\r\n").encode()
               + payload)
        r = c.response()
    return Observed("closed" if r.closed else r.status, r.body, r.headers)


def over_default_limit(b: Bench) -> Observed:
    """1 MiB + 1 streamed to a route with the default limit, which equals
    Envoy's own buffer limit: whichever answers first, 413, nothing sent."""
    body = BODY[:-2] + b', "pad": "' + b"p" * (1024 * 1024) + b'"}}'
    with RawConnection(b.port, b.ca) as c:
        c.head("POST", "/big/1", {**JSON, "transfer-encoding": "chunked"})
        c.chunked([body[i:i + 65536] for i in range(0, len(body), 65536)])
        r = c.response()
    return Observed("closed" if r.closed else r.status, r.body, r.headers)


def every_byte(b: Bench) -> Observed:
    return raw_chunked(b, [BODY[i:i + 1] for i in range(len(BODY))])


def every_split_point(b: Bench) -> Observed:
    """The body in two chunks, split at every offset, one request each."""
    small = json.dumps({"payload": {"BuyerEmail": DOC["payload"]["BuyerEmail"], "AmazonOrderId": "1"}}).encode()
    with RawConnection(b.port, b.ca) as c:
        for k in range(1, len(small)):
            c.head("POST", PATH, {**JSON, "transfer-encoding": "chunked"})
            c.chunked([small[:k], small[k:]], pause=0.002)
            r = c.response()
            if r.status != 200 or json.loads(r.body) != DOC:
                return Observed(r.status, r.body)
    return Observed(200)


def nested(depth: int) -> bytes:
    doc = dict(DOC)
    inner = "[" * depth + "]" * depth
    return json.dumps(doc).encode()[:-1] + b', "deep": ' + inner.encode() + b"}"


def huge_numbers(b: Bench) -> Observed:
    body = BODY[:-1] + b', "n": ' + b"9" * 600 + b', "f": 1e400, "g": -0.000000000000000000001e-400}'
    o = post(b, body)
    if o.status == 200:
        sent = b.stack.service.requests[-1].body
        assert b'"n": ' + b"9" * 600 + b', "f": 1e400, "g": -0.000000000000000000001e-400}' in sent, \
            "unselected numbers are forwarded byte for byte"
    return o


def huge_string(b: Bench) -> Observed:
    doc = json.loads(BODY)
    doc["payload"]["BuyerName"] = "Q" * (MAX - len(BODY) - 40)
    body = json.dumps(doc).encode()
    assert len(body) <= MAX
    o = post(b, body)
    if o.status == 200:
        assert b"QQQQQQQQ" not in b.stack.service.requests[-1].body
    return o


def duplicate_keys(b: Bench) -> Observed:
    # Two BuyerEmail members: a parser that keeps the first and one that
    # keeps the last must both find an envelope.
    body = (b'{"payload": {"BuyerEmail": "first.dup@example.com", "BuyerName": "Dup Name",'
            b' "BuyerEmail": "second.dup@example.com"}}')
    o = post(b, body)
    sent = b.stack.service.requests[-1].body
    assert b"first.dup" not in sent and b"second.dup" not in sent, "both duplicates are encrypted"
    assert sent.count(b'"dpg1.') == 3
    return o


def at_limit(b: Bench) -> Observed:
    doc = json.loads(BODY)
    doc["payload"]["pad"] = ""
    base = len(json.dumps(doc).encode())
    doc["payload"]["pad"] = "p" * (MAX - base)
    body = json.dumps(doc).encode()
    assert len(body) == MAX
    return post(b, body)


def over_limit(b: Bench) -> bytes:
    doc = json.loads(BODY)
    doc["payload"]["pad"] = ""
    base = len(json.dumps(doc).encode())
    doc["payload"]["pad"] = "p" * (MAX + 1 - base)
    body = json.dumps(doc).encode()
    assert len(body) == MAX + 1
    return body


def over_limit_chunked(b: Bench) -> Observed:
    body = over_limit(b)
    return raw_chunked(b, [body[i:i + 100] for i in range(0, len(body), 100)])


def expect_continue(b: Bench, body: bytes, declared: int) -> Observed:
    with RawConnection(b.port, b.ca) as c:
        c.head("POST", PATH, {**JSON, "content-length": str(declared), "expect": "100-continue"})
        first = c.response(stop_after_interim=True)
        if first.interim != [100]:
            return Observed("closed" if first.closed else first.status, first.body)
        c.send(body)
        r = c.response()
    return Observed("closed" if r.closed else r.status, r.body, r.headers)


def client_stops_mid_body(b: Bench) -> Observed:
    """Headers and half the body, a pause, then the client closes."""
    before = b.upstream_total()
    with RawConnection(b.port, b.ca) as c:
        c.head("POST", PATH, {**JSON, "content-length": str(len(BODY))})
        c.send(BODY[:len(BODY) // 2])
        time.sleep(0.5)
        assert b.upstream_total() == before, "a held body's headers went upstream while the client stalled"
    time.sleep(0.2)
    return Observed("closed")


def upstream_resets_mid_response(b: Bench) -> Observed:
    # The service announces a response, sends the part holding a plaintext
    # e-mail, then resets: the client must see none of it.
    body = b'{"payload": {"BuyerEmail": "reset.leak@example.com", "pad": "' + b"z" * 400 + b'"}}'
    b.respond = ScriptedResponse(headers=dict(JSON), body=body, reset_after=80)
    try:
        r = b.stack.request("GET", PATH)
    finally:
        b.respond = None
    assert b"reset.leak" not in r.body
    return Observed(r.status, r.body, r.headers)


def response_every_byte(b: Bench) -> Observed:
    b.respond = ScriptedResponse(headers=dict(JSON), body=b.encrypted_body(), chunk_size=1)
    try:
        r = b.stack.request("GET", PATH)
    finally:
        b.respond = None
    if r.status == 200:
        assert r.json() == DOC, "a response streamed a byte at a time is decrypted whole"
    return Observed(r.status, r.body, r.headers)


def response_over_limit_streamed(b: Bench) -> Observed:
    body = b'{"payload": {"BuyerEmail": "stream.leak@example.com", "pad": "' + b"z" * MAX + b'"}}'
    b.respond = ScriptedResponse(headers=dict(JSON), body=body, chunk_size=256)
    try:
        r = b.stack.request("GET", PATH)
    finally:
        b.respond = None
    assert b"stream.leak" not in r.body
    return Observed(r.status, r.body, r.headers)


# --- HTTP/2 downstream --------------------------------------------------------

def h2(b: Bench, **kw) -> Observed:
    with H2Client(b.port, b.ca) as c:
        (r,) = c.wait(c.request("POST", PATH, headers=JSON, **kw))
    return Observed("reset" if r.reset is not None else r.status, r.body, r.headers)


def h2_concurrent(b: Bench) -> Observed:
    """64 streams on one connection, their DATA frames interleaved a few
    bytes at a time: protected, malformed, over the limit, unprotected."""
    kinds = ["good", "malformed", "good", "unprotected", "good", "too-large", "good", "not-json"] * 8
    bodies = {"good": BODY, "malformed": BODY[:-2], "too-large": over_limit(b), "not-json": BODY,
              "unprotected": b"plain text for an unprotected route"}
    expected = {"good": 200, "malformed": 400, "too-large": 413, "not-json": 415, "unprotected": 200}
    before = len(b.stack.service.requests)
    events_before = len(b.events())
    with H2Client(b.port, b.ca) as c:
        streams = []
        for kind in kinds:
            headers = {"content-type": "text/plain"} if kind in ("not-json", "unprotected") else JSON
            path = "/public/echo" if kind == "unprotected" else PATH
            streams.append((kind, c.start("POST", path, headers)))
        offsets = {sid: 0 for _, sid in streams}
        live = list(streams)
        while live:
            for kind, sid in list(live):
                body, at = bodies[kind], offsets[sid]
                piece = body[at:at + 7]
                offsets[sid] = at + len(piece)
                done = offsets[sid] >= len(body)
                if c.responses[sid].reset is None and not c.responses[sid].ended:
                    c.data(sid, piece, end_stream=done)
                elif not done:
                    offsets[sid] = len(body)  # answered early (413): stop sending
                    done = True
                if done:
                    live.remove((kind, sid))
        responses = c.wait(*[sid for _, sid in streams])
    for (kind, sid), r in zip(streams, responses):
        assert r.status == expected[kind], (kind, sid, r.status, r.reset, r.body[:200])
        if kind == "good":
            assert r.json() == DOC
    seen = b.stack.service.requests[before:]
    assert sorted(q.path for q in seen) == sorted([PATH] * 32 + ["/public/echo"] * 8), \
        "only the good and the unprotected streams reach the service"
    for q in seen:
        assert leaks(q.body, DOC) == []
    # One event per refused stream, each of its own kind.
    deadline = time.monotonic() + 3
    want = sorted(["malformed_body"] * 8 + ["body_too_large"] * 8 + ["unsupported_content_type"] * 8)
    while sorted(b.events()[events_before:]) != want and time.monotonic() < deadline:
        time.sleep(0.05)
    assert sorted(b.events()[events_before:]) == want
    return Observed(200)


def h2_client_resets_mid_body(b: Bench) -> Observed:
    before = b.upstream_total()
    with H2Client(b.port, b.ca) as c:
        sid = c.start("POST", PATH, JSON)
        c.data(sid, BODY[:len(BODY) // 2])
        time.sleep(0.3)
        assert b.upstream_total() == before, "a held body's headers went upstream"
        c.conn.reset_stream(sid)
        c._flush()
        # The connection still serves the next stream.
        (r,) = c.wait(c.request("POST", PATH, headers=JSON, body=BODY))
        assert r.status == 200 and r.json() == DOC
    return Observed("reset")


def h2_upstream_resets(b: Bench) -> Observed:
    body = b'{"payload": {"BuyerEmail": "reset.leak@example.com", "pad": "' + b"z" * 400 + b'"}}'
    b.respond = ScriptedResponse(headers=dict(JSON), body=body, reset_after=80)
    try:
        r = b.stack.request("GET", PATH)
    finally:
        b.respond = None
    assert b"reset.leak" not in r.body
    return Observed(r.status, r.body, r.headers)


def h2_response_trailers(b: Bench) -> Observed:
    """The HTTP/2 service ends its (encrypted) response with trailers: the
    body is decrypted at the trailers, never passed on as it came."""
    b.respond = ScriptedResponse(headers=dict(JSON), body=b.encrypted_body(), trailers={"x-checksum": "1"})
    try:
        with H2Client(b.port, b.ca) as c:
            (r,) = c.wait(c.request("GET", PATH))
    finally:
        b.respond = None
    if r.status == 200:
        assert r.json() == DOC
        assert r.trailers.get("x-checksum") == "1"
    return Observed("reset" if r.reset is not None else r.status, r.body, r.headers)


def h2_both_ways(b: Bench) -> Observed:
    """HTTP/2 from the client and to the service, trailers included."""
    with H2Client(b.port, b.ca) as c:
        (r,) = c.wait(c.request("POST", PATH, headers=JSON, chunks=[BODY[:50], BODY[50:]],
                                trailers={"x-checksum": "1"}))
    assert b.stack.service.negotiated[-1:] == ["h2"], "the service connection speaks HTTP/2"
    if r.status == 200:
        assert r.json() == DOC
    return Observed(r.status, r.body, r.headers)


GZ = gzip.compress(BODY)

CASES = [
    Case("split-every-byte", 200, None, "envelopes", every_byte),
    Case("split-every-offset", 200, None, "envelopes", every_split_point),
    Case("deep-nesting", 400, "malformed_body", "nothing", lambda b: post(b, nested(129))),
    Case("nesting-at-limit", 200, None, "envelopes", lambda b: post(b, nested(127))),
    Case("huge-numbers", 200, None, "envelopes", huge_numbers),
    Case("huge-string", 200, None, "envelopes", huge_string),
    Case("invalid-utf8", 400, "malformed_body", "nothing",
         lambda b: post(b, b'{"payload": {"BuyerEmail": "bad\xff\xfe@example.com"}}')),
    Case("lone-surrogate", 400, "malformed_body", "nothing",
         lambda b: post(b, b'{"payload": {"BuyerEmail": "x@example.com", "note": "\\ud800"}}')),
    Case("surrogate-pair", 200, None, "envelopes",
         lambda b: post(b, b'{"payload": {"BuyerEmail": "\\ud83d\\ude00@example.com"}}')),
    Case("bom", 400, "malformed_body", "nothing", lambda b: post(b, b"\xef\xbb\xbf" + BODY)),
    Case("duplicate-keys", 200, None, "envelopes", duplicate_keys),
    Case("case-folded-member", 400, "ambiguous_member", "nothing",
         lambda b: post(b, b'{"payload": {"BuyerEmail": "a.fold@example.com", "buyerEMAIL": "b.fold@example.com"}}')),
    Case("gzip", 415, "unsupported_content_encoding", "nothing",
         lambda b: post(b, GZ, {**JSON, "content-encoding": "gzip"})),
    Case("br", 415, "unsupported_content_encoding", "nothing",
         lambda b: post(b, b"\x0b\x02\x80" + BODY, {**JSON, "content-encoding": "br"})),
    Case("deflate", 415, "unsupported_content_encoding", "nothing",
         lambda b: post(b, zlib.compress(BODY), {**JSON, "content-encoding": "deflate"})),
    Case("unknown-encoding", 415, "unsupported_content_encoding", "nothing",
         lambda b: post(b, BODY, {**JSON, "content-encoding": "x-custom"})),
    Case("identity-encoding", 200, None, "envelopes",
         lambda b: post(b, BODY, {**JSON, "content-encoding": "identity"})),
    Case("wrong-content-type", 415, "unsupported_content_type", "nothing",
         lambda b: post(b, BODY, {"content-type": "text/plain"})),
    Case("missing-content-type", 415, "unsupported_content_type", "nothing", lambda b: post(b, BODY, {})),
    Case("json-with-charset", 200, None, "envelopes",
         lambda b: post(b, BODY, {"content-type": "Application/JSON; charset=utf-8"})),
    Case("at-max-bytes", 200, None, "envelopes", at_limit),
    Case("over-max-bytes", 413, "body_too_large", "nothing", lambda b: post(b, over_limit(b))),
    Case("over-max-bytes-chunked", 413, "body_too_large", "nothing", over_limit_chunked),
    Case("over-default-max-bytes", 413, "body_too_large", "nothing", over_default_limit, json_error=False),
    Case("duplicate-content-type", 415, "unsupported_content_type", "nothing",
         lambda b: raw_head(b, ["content-type: text/plain", "content-type: application/json",
                                f"content-length: {len(BODY)}"], BODY)),
    Case("duplicate-content-encoding", 415, "unsupported_content_encoding", "nothing",
         lambda b: raw_head(b, ["content-type: application/json", "content-encoding: identity",
                                "content-encoding: gzip", f"content-length: {len(GZ)}"], GZ)),
    Case("transfer-encoding-gzip", 501, None, "nothing",
         lambda b: raw_head(b, ["content-type: application/json", "transfer-encoding: gzip, chunked"],
                            b"%x\r\n%s\r\n0\r\n\r\n" % (len(GZ), GZ))),
    Case("length-and-chunked", 400, None, "nothing",
         lambda b: raw_head(b, ["content-type: application/json", "content-length: 5",
                                "transfer-encoding: chunked"], b"%x\r\n%s\r\n0\r\n\r\n" % (len(BODY), BODY))),
    Case("trailers-http1", 200, None, "envelopes",
         lambda b: raw_chunked(b, [BODY[:40], BODY[40:]], trailers={"x-checksum": "1"})),
    Case("expect-100-continue", 200, None, "envelopes", lambda b: expect_continue(b, BODY, len(BODY))),
    Case("expect-100-over-limit", 413, "body_too_large", "nothing",
         lambda b: expect_continue(b, b"", MAX + 1)),
    Case("client-stops-mid-body", "closed", None, "nothing", client_stops_mid_body),
    Case("upstream-resets-mid-response", 502, None, "request", upstream_resets_mid_response),
    Case("response-every-byte", 200, None, "request", response_every_byte),
    Case("response-over-max-streamed", 502, "body_too_large", "request", response_over_limit_streamed),
    Case("h2-split-every-byte", 200, None, "envelopes",
         lambda b: h2(b, chunks=[BODY[i:i + 1] for i in range(len(BODY))])),
    Case("h2-trailers", 200, None, "envelopes",
         lambda b: h2(b, chunks=[BODY[:40], BODY[40:]], trailers={"x-checksum": "1"})),
    Case("h2-malformed", 400, "malformed_body", "nothing", lambda b: h2(b, body=BODY[:-1])),
    Case("h2-over-max-bytes", 413, "body_too_large", "nothing", lambda b: h2(b, body=over_limit(b))),
    Case("h2-concurrent-streams", 200, "*", "envelopes", h2_concurrent),
    Case("h2-client-resets-mid-body", "reset", None, "envelopes", h2_client_resets_mid_body),
    Case("h2-upstream", 200, None, "envelopes", h2_both_ways, stack="h2"),
    Case("h2-upstream-response-trailers", 200, None, "request", h2_response_trailers, stack="h2"),
    Case("h2-upstream-resets-mid-response", 503, None, "request", h2_upstream_resets, stack="h2"),
]


def listener_alpn(doc: dict) -> None:
    """Offer HTTP/2 to clients (ALPN h2, then http/1.1) on the listener."""
    tls = doc["static_resources"]["listeners"][0]["filter_chains"][0]["transport_socket"]["typed_config"]
    tls["common_tls_context"]["alpn_protocols"] = ["h2", "http/1.1"]


def http2_service(doc: dict) -> None:
    """The service cluster speaks HTTP/2 over TLS (ALPN h2)."""
    listener_alpn(doc)
    cluster = doc["static_resources"]["clusters"][0]
    cluster["typed_extension_protocol_options"] = {"envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
        "@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
        "explicit_http_config": {"http2_protocol_options": {}}}}
    cluster["transport_socket"]["typed_config"]["common_tls_context"]["alpn_protocols"] = ["h2"]


def sealed_for_responses(keys: str, workdir: Path) -> bytes:
    """DOC with the route's fields sealed for the response direction, by the
    project's CLI (the same code as the filter)."""
    policy = workdir / "policy.json"
    policy.write_text(json.dumps(POLICY))
    out = subprocess.run([str(CLI), "encrypt", "--policy", str(policy), "--route", "orders",
                          "--direction", "response", "-"], input=BODY, capture_output=True, check=True,
                         env={**os.environ, "DPP_GUARD_KEYS": keys}).stdout
    assert b'"dpg1.' in out and leaks(out, DOC) == []
    return out


@pytest.fixture(scope="module")
def benches(wasm, pki, tmp_path_factory):
    keys = keygen("k1")
    response = sealed_for_responses(keys, tmp_path_factory.mktemp("bad-inputs-cli"))
    made: dict[str, Bench] = {}
    stacks: list[GuardStack] = []

    def make(name: str) -> Bench:
        if name not in made:
            stack = GuardStack(pki, workdir=tmp_path_factory.mktemp(f"bad-inputs-{name}"), policy=POLICY,
                               ecds=HOP_A, bootstrap=BOOTSTRAP, env={"DPP_GUARD_KEYS": keys},
                               edit_bootstrap=listener_alpn if name == "h1" else http2_service)
            bench = Bench(stack, response)
            if name == "h2":
                stack.service = H2Upstream(stack.service_leaf, responder=bench.service)
            else:
                stack.service.responder = bench.service
            stacks.append(stack)
            stack.start()
            made[name] = bench
        return made[name]

    yield make
    for s in stacks:
        s.stop()


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input(benches, case: Case, request):
    b = benches(case.stack)
    request.node.stash[ENVOYS_KEY] = [b.envoy]
    events_before = b.events()
    upstream_before = b.upstream_total()
    seen_before = len(b.stack.service.requests)

    observed = case.run(b)

    assert observed.status == case.status, (observed.status, observed.body[:300])
    if isinstance(case.status, int) and case.status >= 400 and case.event and case.json_error:
        assert (observed.headers or {}).get("content-type") == "application/json", observed.headers
        assert set(json.loads(observed.body)) == {"error", "message"}
    # The documented event, and no other.
    deadline = time.monotonic() + 3
    while True:
        new = b.events()[len(events_before):]
        if case.event == "*" or new == ([case.event] if case.event else []) or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    if case.event != "*":
        assert new == ([case.event] if case.event else []), new
    # Nothing the service should not see.
    seen = b.stack.service.requests[seen_before:]
    if case.upstream == "nothing":
        assert seen == [], [q.body[:200] for q in seen]
        assert b.upstream_total() == upstream_before, "request headers went upstream"
    for q in seen:
        assert leaks(q.body, DOC) == [], f"plaintext PII reached the service: {q.body[:300]!r}"
        assert b"@example.com" not in q.body or case.upstream == "request", q.body[:300]
    if case.upstream == "envelopes":
        assert any(b'"dpg1.' in q.body for q in seen), "the PII travelled as envelopes"
    # The worker still serves.
    b.good_request_works()


def test_the_catalogue_table_in_the_docs_is_the_one_tested():
    """docs/reliability.md lists exactly these cases, statuses and events."""
    text = (ROOT / "docs" / "reliability.md").read_text()
    text = text.split("\n## Bad-input catalogue\n", 1)[1].split("\n## ", 1)[0]
    rows = re.findall(r"^\| `([a-z0-9-]+)` \|[^|]*\| ([^|]+) \| ([^|]+) \|", text, re.M)
    documented = {r[0]: (r[1].strip(), r[2].strip()) for r in rows}
    tested = {c.id: (str(c.status), f"`{c.event}`" if c.event and c.event != "*" else
                     ("per stream" if c.event == "*" else "none")) for c in CASES}
    assert documented == tested
