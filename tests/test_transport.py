"""Encryption in transit against a real Envoy running the shipped configuration
(envoy/dpp-guard.yaml with the upstream TLS guard), with extra clusters added
by the tests: a raw TCP server that records every byte it receives stands in
for a plaintext upstream and must never see a request byte."""
from __future__ import annotations

import json
import socket
import ssl
from typing import Any, Callable, Optional

import pytest
import yaml

from support import client
from support.envoy import Envoy, render, write_ecds
from support.stack import GuardStack
from support.upstream import RawTcpRecorder, RecordingHttpServer

TLS_CTX = "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext"
PROTOCOL_OPTIONS = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"

POLICY = {
    "version": 1,
    "routes": [{"name": "orders", "match": {"path": {"prefix": "/orders/"}}, "no_store": True}],
}


def with_transport(transport: dict) -> dict:
    return {**POLICY, "transport": transport}


# -- building the stack -----------------------------------------------------------

def cluster(name: str, port: int, *, tls_ca=None, sni: str = "localhost",
            connect_timeout: str = "2s") -> dict:
    c: dict[str, Any] = {
        "name": name, "type": "STATIC", "connect_timeout": connect_timeout,
        "load_assignment": {"cluster_name": name, "endpoints": [{"lb_endpoints": [
            {"endpoint": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": port}}}}]}]},
    }
    if tls_ca is not None:
        c["transport_socket"] = {"name": "envoy.transport_sockets.tls", "typed_config": {
            "@type": TLS_CTX, "sni": sni,
            "common_tls_context": {"validation_context": {"trusted_ca": {"filename": str(tls_ca)}}}}}
    return c


def own_http_filters(c: dict) -> dict:
    """The misconfiguration the lint reports: cluster-level http_filters replace
    the router's upstream chain, guard included."""
    c["typed_extension_protocol_options"] = {PROTOCOL_OPTIONS: {
        "@type": "type.googleapis.com/" + PROTOCOL_OPTIONS,
        "explicit_http_config": {"http_protocol_options": {}},
        "http_filters": [{"name": "envoy.filters.http.upstream_codec", "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.upstream_codec.v3.UpstreamCodec"}}],
    }}
    return c


class TransportStack(GuardStack):
    """GuardStack plus clusters routed by path prefix `/<cluster>/`, and
    optionally a plaintext copy of the listener (`plain_ingress`)."""

    def __init__(self, pki, clusters: list[dict], plaintext_listener: bool = False, **kw):
        super().__init__(pki, **kw)
        self.clusters = clusters
        self.plaintext_listener = plaintext_listener
        self.plain_port = 0

    def start(self) -> "TransportStack":
        self.service.start()
        values = self.values()
        policies = {"dpp_guard": self.policy, "dpp_upstream_guard": self.policy} if self.policy else None
        write_ecds(self.ecds, values["DPP_GUARD_ECDS"], values, policies)
        write_ecds(self.upstream_guard_ecds, values["DPP_UPSTREAM_GUARD_ECDS"], values, policies)
        doc = yaml.safe_load(render(self.bootstrap, values))
        listener = doc["static_resources"]["listeners"][0]
        hcm = listener["filter_chains"][0]["filters"][0]["typed_config"]
        routes = hcm["route_config"]["virtual_hosts"][0]["routes"]
        for c in self.clusters:
            routes.insert(0, {"match": {"prefix": f"/{c['name']}/"}, "name": c["name"],
                              "route": {"cluster": c["name"]}})
            doc["static_resources"]["clusters"].append(c)
        if self.plaintext_listener:
            plain = json.loads(json.dumps(listener))
            plain["name"] = "plain_ingress"
            del plain["filter_chains"][0]["transport_socket"]
            doc["static_resources"]["listeners"].append(plain)
        self.envoy = Envoy(yaml.safe_dump(doc, sort_keys=False), self.workdir, env=self.env).start()
        self.port = self.envoy.listener_port("dpp_ingress")
        if self.plaintext_listener:
            self.plain_port = self.envoy.listener_port("plain_ingress")
        return self

    def plain_request(self, method: str, path: str, **kw) -> client.Response:
        return client.request(self.plain_port, method, path, **kw)

    def events(self, kind: Optional[str] = None) -> list[dict]:
        out = []
        for line in self.envoy.plugin_lines():
            if "dpp_event " in line:
                ev = json.loads(line.split("dpp_event ", 1)[1])
                if kind is None or ev["event"] == kind:
                    out.append(ev)
        return out

    def counter(self, name: str) -> int:
        return self.envoy.stats().get(f"wasmcustom.{name}", 0)


@pytest.fixture
def transport_stack(pki, tmp_path, envoys):
    stacks: list[TransportStack] = []
    closers: list[Callable[[], None]] = []

    def make(clusters: list[dict], policy: dict = POLICY, **kw) -> TransportStack:
        stack = TransportStack(pki, clusters, policy=policy, workdir=tmp_path / f"t{len(stacks)}", **kw)
        stacks.append(stack)
        try:
            stack.start()
        finally:
            if stack.envoy is not None:
                envoys.append(stack.envoy)
        return stack

    def own(server):
        """Registers a test upstream so it is stopped at teardown."""
        closers.append(server.stop)
        return server.start()

    make.own = own
    yield make
    for s in stacks:
        s.stop()
    for close in closers:
        close()


def assert_refused(r: client.Response, status: int, code: str) -> None:
    assert r.status == status, (r.status, r.body)
    assert r.headers["content-type"] == "application/json"
    assert r.json()["error"] == code


def assert_no_http_bytes(recorder: RawTcpRecorder) -> None:
    assert recorder.wait_for_connection() >= 1, "Envoy never connected: the test proves nothing"
    assert bytes(recorder.data) == b"", f"request bytes reached the plaintext upstream: {bytes(recorder.data)[:80]!r}"


# -- upstream guard ----------------------------------------------------------------

def test_tls_upstream_answers_200_new_then_pooled_connection(transport_stack):
    stack = transport_stack([])
    for _ in range(3):
        r = stack.request("GET", "/orders/v0/orders/1")
        assert r.status == 200 and r.json() == {"ok": True}
    assert len(stack.service.requests) == 3
    # Decided after waiting for the first connection, at once on the reused one.
    assert stack.counter("dpp_guard.upstream.allowed_new_connection") >= 1
    assert stack.counter("dpp_guard.upstream.allowed_pooled") >= 1
    assert stack.events("upstream_plaintext_refused") == []


@pytest.mark.parametrize("method, body", [("GET", None), ("POST", b"x" * 256 * 1024)], ids=["GET", "POST-256KiB"])
def test_plaintext_upstream_is_refused_before_any_request_byte(transport_stack, method, body):
    plain = transport_stack.own(RawTcpRecorder())
    stack = transport_stack([cluster("plain", plain.port)])
    r = stack.request(method, "/plain/v0/orders?MarketplaceIds=X", body=body,
                      headers={"content-type": "application/octet-stream"} if body else None)
    assert_refused(r, 502, "upstream_not_tls")
    assert_no_http_bytes(plain)
    (event,) = stack.events("upstream_plaintext_refused")
    assert event["severity"] == "high" and event["method"] == method
    assert "cluster=plain" in event["detail"]
    assert "MarketplaceIds" not in stack.envoy.log(), "the query string must not be logged"
    # A refused request is not a plaintext exchange: no false alarm.
    assert stack.events("plaintext_upstream_observed") == []
    assert stack.counter("dpp_guard.plaintext_upstream") == 0


def test_200_mixed_requests_tls_pass_plaintext_never_gets_a_byte(transport_stack):
    plain = transport_stack.own(RawTcpRecorder())
    stack = transport_stack([cluster("plain", plain.port)])
    statuses: dict[str, list[int]] = {"tls": [], "plain": []}
    for i in range(210):
        # An irregular mix so that both clusters see runs of pooled reuse and fresh connects.
        target = "plain" if (i * 7) % 5 in (0, 3) else "tls"
        if target == "plain":
            body = b"y" * 4096 if i % 2 else None
            r = stack.request("POST" if body else "GET", f"/plain/{i}", body=body)
            if r.status == 502:
                assert r.json()["error"] == "upstream_not_tls"
        else:
            r = stack.request("GET", f"/orders/{i}")
        statuses[target].append(r.status)
    assert set(statuses["tls"]) == {200}, statuses["tls"]
    assert set(statuses["plain"]) == {502}, statuses["plain"]
    assert len(stack.service.requests) == len(statuses["tls"])
    assert_no_http_bytes(plain)
    refused = (stack.counter("dpp_guard.upstream.refused_new_connection")
               + stack.counter("dpp_guard.upstream.refused_pooled"))
    assert refused == len(statuses["plain"])
    assert stack.counter("dpp_guard.upstream.allowed_pooled") > 0
    assert stack.counter("dpp_guard.plaintext_upstream") == 0, "refusals are not plaintext exchanges"
    print(f"\ntls={len(statuses['tls'])} plain={len(statuses['plain'])} "
          f"plain connects={plain.connections} "
          f"allowed pooled={stack.counter('dpp_guard.upstream.allowed_pooled')} "
          f"new={stack.counter('dpp_guard.upstream.allowed_new_connection')} "
          f"refused new={stack.counter('dpp_guard.upstream.refused_new_connection')} "
          f"pooled={stack.counter('dpp_guard.upstream.refused_pooled')}")


def test_tls_below_the_minimum_version_is_refused(transport_stack, pki):
    leaf = pki.leaf("tls12-only")
    old = transport_stack.own(RecordingHttpServer(tls=leaf, tls_max_version=ssl.TLSVersion.TLSv1_2))
    stack = transport_stack([cluster("old", old.port, tls_ca=pki.ca_cert)],
                            policy=with_transport({"upstream": {"min_tls_version": "TLSv1.3"}}))
    assert_refused(stack.request("POST", "/old/x", body=b'{"a":1}'), 502, "upstream_tls_version")
    assert old.requests == [], "no request may reach a TLS 1.2 upstream under a TLS 1.3 minimum"
    assert len(stack.events("upstream_tls_version_refused")) == 1
    # The same stack still serves its TLS 1.3 service.
    assert stack.request("GET", "/orders/1").status == 200


def test_pinned_identity(transport_stack, pki):
    import hashlib

    leaf = pki.leaf("billing", uris=("spiffe://test/billing",))
    der = ssl.PEM_cert_to_DER_cert(leaf.cert.read_text())
    digest = hashlib.sha256(der).hexdigest().upper()
    colon_digest = ":".join(digest[i:i + 2] for i in range(0, 64, 2))  # as openssl prints it
    billing = transport_stack.own(RecordingHttpServer(tls=leaf))
    names = ("good", "digest", "bad", "bad_digest")
    stack = transport_stack(
        [cluster(n, billing.port, tls_ca=pki.ca_cert) for n in names],
        policy=with_transport({"upstream": {"clusters": {
            "good": {"pin": {"uri_san": "spiffe://test/billing", "dns_san": "localhost"}},
            "digest": {"pin": {"sha256": colon_digest}},
            "bad": {"pin": {"uri_san": "spiffe://test/other"}},
            "bad_digest": {"pin": {"sha256": "00" * 32}},
        }}}))
    assert_refused(stack.request("GET", "/bad/x"), 502, "upstream_identity")
    assert_refused(stack.request("GET", "/bad_digest/x"), 502, "upstream_identity")
    assert billing.requests == []
    events = stack.events("upstream_identity_refused")
    assert [e["detail"].split(";")[0] for e in events] == ["cluster=bad", "cluster=bad_digest"]
    assert stack.request("GET", "/good/x").status == 200
    assert stack.request("GET", "/digest/x").status == 200
    assert [q.path for q in billing.requests] == ["/good/x", "/digest/x"]


def test_exempt_cluster_passes_plaintext_and_is_warned_at_start(transport_stack):
    legacy = transport_stack.own(RecordingHttpServer())
    stack = transport_stack([cluster("legacy", legacy.port)], policy=with_transport(
        {"upstream": {"clusters": {"legacy": {"exempt": {"reason": "vendor link SEC-1"}}}}}))
    assert stack.request("GET", "/legacy/x").status == 200
    assert [q.path for q in legacy.requests] == ["/legacy/x"]
    warnings = stack.events("upstream_tls_exemption")
    assert warnings and all(w["severity"] == "warning" for w in warnings)
    assert "cluster=legacy; reason: vendor link SEC-1" in warnings[0]["detail"]
    # Explicitly exempt: not reported as a slipped-through plaintext upstream.
    assert stack.events("plaintext_upstream_observed") == []


def test_never_connected_is_refused_at_the_wait_bound(transport_stack, pki):
    # A TLS cluster whose server accepts TCP and never answers the ClientHello:
    # the connection never becomes usable.
    mute = transport_stack.own(RawTcpRecorder())
    stack = transport_stack([cluster("mute", mute.port, tls_ca=pki.ca_cert, connect_timeout="30s")],
                            policy=with_transport({"upstream": {"connect_wait_ms": 300}}))
    assert_refused(stack.request("GET", "/mute/secret-path"), 504, "upstream_connect_wait")
    assert b"secret-path" not in bytes(mute.data) and b"HTTP/1.1" not in bytes(mute.data)
    assert len(stack.events("upstream_wait_expired")) == 1
    assert stack.counter("dpp_guard.upstream.wait_expired") == 1


def test_connection_gone_while_waiting(transport_stack):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    closed_port = s.getsockname()[1]
    s.close()  # nothing listens: the connect is refused
    stack = transport_stack([cluster("gone", closed_port)])
    r = stack.request("GET", "/gone/x")
    assert r.status == 503, "Envoy answers a failed connect itself"
    assert len(stack.events("upstream_connection_gone")) == 1
    assert stack.counter("dpp_guard.upstream.connection_gone") == 1


# -- downstream ---------------------------------------------------------------------

def test_protected_route_refuses_plaintext_downstream(transport_stack):
    stack = transport_stack([], plaintext_listener=True)
    assert_refused(stack.plain_request("POST", "/orders/v0/orders/1?BuyerEmail=x", body=b"{}"),
                   403, "downstream_tls_required")
    assert stack.service.requests == []
    (event,) = stack.events("downstream_plaintext_refused")
    assert event["route"] == "orders" and event["severity"] == "high"
    # Unprotected routes are not the policy's business; TLS still works.
    assert stack.plain_request("GET", "/catalog/1").status == 200
    assert stack.request("GET", "/orders/v0/orders/1").status == 200


def test_trusted_tls_terminator_accepts_plaintext_and_is_warned(transport_stack):
    stack = transport_stack([], plaintext_listener=True,
                            policy=with_transport({"downstream": {"trusted_tls_terminator": True}}))
    assert stack.plain_request("GET", "/orders/v0/orders/1").status == 200
    assert stack.events("trusted_tls_terminator"), "the weakened default must be visible at start"


# -- defence in depth -----------------------------------------------------------------

def test_bypassed_guard_is_detected_counted_and_reported(transport_stack):
    """A cluster with its own http_filters bypasses the router's guard (the
    lint refuses such a configuration); the response-time check catches it."""
    plain = transport_stack.own(RecordingHttpServer())
    stack = transport_stack([own_http_filters(cluster("bypass", plain.port))])
    r = stack.request("GET", "/bypass/x")
    assert r.status == 200, "the bypass is real: this is why the lint refuses it"
    events = stack.events("plaintext_upstream_observed")
    assert len(events) == 1, "reported once per request (response, not again at log)"
    assert events[0]["severity"] == "critical" and "cluster=bypass" in events[0]["detail"]
    assert stack.counter("dpp_guard.plaintext_upstream") == 1


def replace_upstream_guard_policy(stack, policy: dict, staging_dir) -> None:
    """What an operator does: write the new ECDS file beside the old one, mv it over."""
    ecds = stack.values()["DPP_UPSTREAM_GUARD_ECDS"]
    doc = yaml.safe_load(ecds.read_text())
    doc["resources"][0]["typed_config"]["config"]["configuration"]["value"] = json.dumps(policy)
    staged = staging_dir / "staged.ecds.yaml"
    staged.write_text(yaml.safe_dump(doc))
    staged.rename(ecds)


def test_pooled_plaintext_connection_is_refused_without_a_byte(transport_stack, tmp_path):
    """A plaintext connection already in the pool (opened while the cluster was
    exempt) is refused at once when the exemption is withdrawn, and the request
    never reaches it."""
    import time

    legacy = transport_stack.own(RecordingHttpServer())
    stack = transport_stack([cluster("legacy", legacy.port)], policy=with_transport(
        {"upstream": {"clusters": {"legacy": {"exempt": {"reason": "migration"}}}}}))
    assert stack.request("GET", "/legacy/before").status == 200
    replace_upstream_guard_policy(stack, POLICY, tmp_path)
    deadline = time.monotonic() + 15
    n = 0
    while time.monotonic() < deadline:
        n += 1
        r = stack.request("POST", f"/legacy/after-{n}", body=b"z" * 1024)
        if r.status != 200:
            break
        time.sleep(0.1)
    assert_refused(r, 502, "upstream_not_tls")
    assert stack.counter("dpp_guard.upstream.refused_pooled") == 1
    (event,) = stack.events("upstream_plaintext_refused")
    assert event["detail"] == "cluster=legacy; pooled connection"
    assert f"/legacy/after-{n}" not in [q.path for q in legacy.requests]


def test_pooled_connection_is_decided_at_once(transport_stack, tmp_path):
    """A connection already in the pool is judged in the request-headers callback:
    after a policy change pins another identity for `service`, the next request on
    the pooled TLS connection is refused without waiting."""
    import time

    stack = transport_stack([])
    assert stack.request("GET", "/orders/1").status == 200
    assert stack.request("GET", "/orders/2").status == 200
    assert stack.counter("dpp_guard.upstream.allowed_pooled") >= 1
    pinned = with_transport({"upstream": {"clusters": {"service": {"pin": {"dns_san": "not-the-service"}}}}})
    replace_upstream_guard_policy(stack, pinned, tmp_path)
    deadline = time.monotonic() + 15
    n = 0
    while time.monotonic() < deadline:
        n += 1
        r = stack.request("GET", f"/orders/after-{n}")
        if r.status != 200:
            break
        time.sleep(0.1)
    assert_refused(r, 502, "upstream_identity")
    assert stack.counter("dpp_guard.upstream.refused_pooled") == 1
    (event,) = stack.events("upstream_identity_refused")
    assert event["detail"] == "cluster=service; pooled connection"
    assert f"/orders/after-{n}" not in [q.path for q in stack.service.requests]


# -- lint-envoy on what ships ------------------------------------------------------------

def shipped_bootstraps():
    from support.paths import ENVOY_DIR
    return [p for p in sorted(ENVOY_DIR.glob("*.yaml")) if not p.name.endswith(".ecds.yaml")]


@pytest.mark.parametrize("bootstrap", shipped_bootstraps(), ids=lambda p: p.name)
def test_shipped_configuration_installs_the_guard_and_passes_lint(bootstrap, pki, tmp_path):
    """Rendered exactly as users render them (every ${NAME} filled in, the ECDS
    files it references written beside it), each shipped bootstrap lints clean."""
    import re
    import subprocess

    from support.envoy import guard_values
    from support.paths import ENVOY_DIR, ROOT

    leaf = pki.leaf("lint")
    values = guard_values(LISTENER_CERT=leaf.cert, LISTENER_KEY=leaf.key, SERVICE_ADDRESS="127.0.0.1",
                          SERVICE_PORT=8443, SERVICE_SNI="localhost", SERVICE_CA=pki.ca_cert)
    text = bootstrap.read_text()
    for name in set(re.findall(r"\$\{([A-Z0-9_]+)\}", text)):
        if name.endswith("_ECDS"):
            # DPP_GUARD_ECDS -> dpp-guard.ecds.yaml
            template = ENVOY_DIR / (name[:-len("_ECDS")].lower().replace("_", "-") + ".ecds.yaml")
            out = tmp_path / template.name
            write_ecds(template, out, values)
            values[name] = out
        values.setdefault(name, "placeholder")
    rendered = tmp_path / bootstrap.name
    rendered.write_text(render(text, values))
    cli = ROOT / "target" / "debug" / "dpp-guard"
    r = subprocess.run([str(cli), "lint-envoy", str(rendered)], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "0 finding(s)" in r.stdout
    # The guard really is there: dropping it from the rendered file is a finding.
    doc = yaml.safe_load(rendered.read_text())
    for listener in doc["static_resources"]["listeners"]:
        for chain in listener["filter_chains"]:
            for f in chain["filters"]:
                for hf in f["typed_config"].get("http_filters", []):
                    hf.get("typed_config", {}).pop("upstream_http_filters", None)
    rendered.write_text(yaml.safe_dump(doc))
    r = subprocess.run([str(cli), "lint-envoy", str(rendered)], capture_output=True, text=True)
    assert r.returncode == 1 and "router-without-upstream-guard" in r.stdout, r.stdout
