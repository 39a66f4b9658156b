"""Field encryption as deployed: the manifests of each flavour, translated
the way Istio (istiod + istio-agent) or Envoy Gateway would
(tests/deploy/istio_xds.py, tests/deploy/eg_xds.py), run in real Envoys
1.40 with the real dpp_guard.wasm, in the untrusted-hop topology:

    app --> sender --TLS--> relay (untrusted) --TLS--> receiver --> app

- `trafficextension`: sender = the orders-api sidecar's outbound chain
  (Istio >= 1.30, TrafficExtensions), receiver = the fulfillment sidecar's
  inbound chain;
- `wasmplugin`: the same with WasmPlugins and the EnvoyFilter holds, as
  Istio 1.29 builds it;
- `envoy-gateway`: sender = the Gateway `edge` (EnvoyExtensionPolicy +
  EnvoyPatchPolicy), receiver = the TrafficExtension fulfillment sidecar.

Both Istio senders also carry the upstream guard EnvoyFilter, the Gateway
the EnvoyPatchPolicy's guard: a route to a plaintext upstream (a raw TCP
server) shows it refuses before any byte is sent.

What a user relies on: the relay sees envelopes only; a refused response
body reaches the client as dpp_guard's 502 (not a reset) and a refused
request never starts upstream, on both hops; the three filters run in the
documented order, and a copy with the holds in the wrong order fails.
"""

from __future__ import annotations

import hashlib
import http.client
import json

import pytest

import eg_xds
import istio_xds
import mesh_run
from deploy_support import FIELD_FLAVOURS, SHOWN_ENVOYS, hold_code, manifests
from support import client
from support.sp_api import OPERATIONS, leaks, pii_values
from support.upstream import RawTcpRecorder, ReceivedRequest, RecordingHttpServer, ScriptedResponse

JSON = {"content-type": "application/json"}
# A record whose PII field holds a plain value where an envelope belongs
# (the order id is there: the rules bind envelopes to it).
PLAIN_VALUE = json.dumps({"payload": {"AmazonOrderId": OPERATIONS["getOrder"][1]["payload"]["AmazonOrderId"],
                                      "BuyerEmail": "injected@example.com"}}).encode()
RELAY_HOST = "relay.partner.example"
RELAY_CLUSTER = f"outbound|80||{RELAY_HOST}"
PLAIN_HOST = "plain.partner.example"
PLAIN_CLUSTER = f"outbound|80||{PLAIN_HOST}"
INBOUND_CLUSTER = "inbound|8080||"
EG_RELAY_CLUSTER = "httproute/edge/orders/rule/0"
EG_PLAIN_CLUSTER = "httproute/edge/plain/rule/0"
BUYER_INFO_PATH = OPERATIONS["getOrderBuyerInfo"][0]
FLAVOURS = ["trafficextension", "wasmplugin", "envoy-gateway"]


def service(req: ReceivedRequest) -> ScriptedResponse:
    """The trusted app behind the receiver: GET answers the operation's
    payload, a body is echoed back."""
    if req.body:
        return ScriptedResponse(headers=dict(JSON), body=req.body)
    for path, doc in OPERATIONS.values():
        if req.path == path:
            return ScriptedResponse(headers=dict(JSON), body=json.dumps(doc, indent=2).encode())
    return ScriptedResponse(status=404, body=b'{"error":"not found"}')


class App:
    """The receiving app; `next_response` overrides one answer."""

    def __init__(self):
        self.next_response = None
        self.server = RecordingHttpServer(responder=self._answer)
        self.port = self.server.port

    def _answer(self, req):
        scripted, self.next_response = self.next_response, None
        return scripted or service(req)


def flavour_docs(root, flavour: str) -> list[dict]:
    """All manifests except the other Istio field flavour (apply one, never both)."""
    other = {f: d for f, d in FIELD_FLAVOURS.items() if f != flavour}
    skip = tuple(d + "/" for d in other.values()) if flavour in FIELD_FLAVOURS else (FIELD_FLAVOURS["wasmplugin"] + "/",)
    return [d for p, d in manifests(root) if not p.relative_to(root).as_posix().startswith(skip)]


def pod_labels(docs: list[dict], namespace: str) -> dict:
    (dep,) = [d for d in docs if d["kind"] == "Deployment" and d["metadata"]["namespace"] == namespace]
    return dep["spec"]["template"]["metadata"]["labels"]


class Topology:
    """Starts and stops the stacks of this module; each built once."""

    def __init__(self, tmp, make_oci):
        self.tmp = tmp
        self.root = make_oci / "deploy"
        self.registry = mesh_run.OciRegistry(make_oci / "dpp-guard", tmp / "istio-agent-cache")
        self.pki, self.leaves = mesh_run.new_pki(tmp / "pki")
        self.env = mesh_run.keys_env()
        self.modules = mesh_run.ModuleServer(self.leaves["modules"]).start()
        self.stacks: dict[str, dict] = {}
        self._stop = [self.modules.stop]

    def close(self):
        for stop in reversed(self._stop):
            stop()

    # -- Istio ---------------------------------------------------------------

    def istio_sender_boot(self, docs, workdir, relay_port: int, plain_port: int, istio: str) -> dict:
        sidecar = istio_xds.Sidecar("orders", pod_labels(docs, "orders"))
        gen = istio_xds.build_http_filters(docs, sidecar, istio_xds.SIDECAR_OUTBOUND, 80, istio)
        filters = istio_xds.ecds_files(istio_xds.agent_converts(gen.ecds, self.registry.fetch), workdir / "ecds", gen.http_filters)
        hcm = mesh_run.sidecar_hcm("outbound_0.0.0.0_80", filters, [
            {"name": f"{RELAY_HOST}:80", "domains": [RELAY_HOST, f"{RELAY_HOST}:80"],
             "routes": [{"match": {"prefix": "/"}, "route": {"cluster": RELAY_CLUSTER}}]},
            {"name": f"{PLAIN_HOST}:80", "domains": [PLAIN_HOST, f"{PLAIN_HOST}:80"],
             "routes": [{"match": {"prefix": "/"}, "route": {"cluster": PLAIN_CLUSTER}}]},
        ])
        # The relay outside the mesh: a ServiceEntry with a DestinationRule
        # that originates TLS (mode SIMPLE), so the request is HTTP inside
        # the sidecar and TLS on the wire; an endpoint without TLS stands
        # for a destination reached in plaintext.
        clusters = [
            mesh_run.cluster(RELAY_CLUSTER, relay_port, tls_ca=self.pki.ca_cert, sni=RELAY_HOST),
            mesh_run.cluster(PLAIN_CLUSTER, plain_port),
        ]
        return mesh_run.bootstrap("sidecar_outbound", hcm, clusters)

    def istio_receiver_boot(self, docs, workdir, app_port: int, istio: str) -> dict:
        sidecar = istio_xds.Sidecar("fulfillment", pod_labels(docs, "fulfillment"))
        gen = istio_xds.build_http_filters(docs, sidecar, istio_xds.SIDECAR_INBOUND, 8080, istio)
        filters = istio_xds.ecds_files(istio_xds.agent_converts(gen.ecds, self.registry.fetch), workdir / "ecds", gen.http_filters)
        hcm = mesh_run.sidecar_hcm("inbound_0.0.0.0_8080", filters, [
            {"name": "inbound|http|8080", "domains": ["*"],
             "routes": [{"match": {"prefix": "/"}, "route": {"cluster": INBOUND_CLUSTER}}]},
        ])
        # The hop into the pod is the mesh's mutual TLS: a TLS listener here.
        return mesh_run.bootstrap("sidecar_inbound", hcm, [mesh_run.cluster(INBOUND_CLUSTER, app_port)],
                                  tls=mesh_run.downstream_tls(self.leaves["receiver"]))

    # -- Envoy Gateway -------------------------------------------------------

    def gateway_boot(self, docs, relay_port: int, plain_port: int, module_pin: str | None = None,
                     fetch_retries: int | None = None) -> tuple[dict, list[str]]:
        (eep,) = [d for d in docs if d["kind"] == "EnvoyExtensionPolicy"]
        (epp,) = [d for d in docs if d["kind"] == "EnvoyPatchPolicy"]
        # Envoy Gateway pulls the image, checks the pin, serves plugin.wasm.
        image = eep["spec"]["wasm"][0]["code"]["image"]
        module = self.registry.pull(image["url"], image["sha256"])
        self.modules.files["/eg-wasm/unguessable.wasm"] = module
        serving = "https://envoy-gateway.envoy-gateway-system.svc.cluster.local:18002/eg-wasm/unguessable.wasm"
        routes = [
            {"match": {"prefix": "/plain/"}, "route": {"cluster": EG_PLAIN_CLUSTER}},
            {"match": {"prefix": "/"}, "route": {"cluster": EG_RELAY_CLUSTER}},
        ]
        gw = eg_xds.translate(eep, "https", mesh_run.downstream_tls(self.leaves["gateway"]), routes, serving,
                              hashlib.sha256(module).hexdigest())
        # The backends (HTTPRoute backendRefs; the relay with a BackendTLSPolicy).
        gw.resources[eg_xds.CLUSTER_TYPE][EG_RELAY_CLUSTER] = mesh_run.cluster(
            EG_RELAY_CLUSTER, relay_port, tls_ca=self.pki.ca_cert, sni=RELAY_HOST)
        gw.resources[eg_xds.CLUSTER_TYPE][EG_PLAIN_CLUSTER] = mesh_run.cluster(EG_PLAIN_CLUSTER, plain_port)
        if module_pin is not None:
            epp = json.loads(json.dumps(epp).replace(_module_pin(epp), module_pin))
        if fetch_retries is not None:
            epp = json.loads(json.dumps(epp))
            _guard_config(epp)["vm_config"]["code"]["remote"]["retry_policy"]["num_retries"] = fetch_retries
        errors = eg_xds.apply_patch_policy(gw, epp)
        # The guard's module: published where the EnvoyPatchPolicy's cluster
        # points (DNS -> this server, its CA -> the test CA).
        guard_uri = _guard_config(epp)["vm_config"]["code"]["remote"]["http_uri"]["uri"]
        self.modules.files["/" + guard_uri.split("/", 3)[3]] = (self.root.parent / "plugin.wasm").read_bytes()
        clusters = list(gw.resources[eg_xds.CLUSTER_TYPE].values())
        for c in clusters:
            if c["name"] == "dpp-guard-module":
                c["type"] = "STATIC"
                c["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]["address"]["socket_address"] = {
                    "address": "127.0.0.1", "port_value": self.modules.port}
                c["transport_socket"]["typed_config"]["common_tls_context"]["validation_context"]["trusted_ca"] = {
                    "filename": str(self.pki.ca_cert)}
        # Envoy Gateway's bootstrap: the cluster of its Wasm HTTP server.
        clusters.append(mesh_run.cluster(eg_xds.WASM_CLUSTER, self.modules.port, tls_ca=self.pki.ca_cert,
                                         sni="envoy-gateway.envoy-gateway-system.svc.cluster.local"))
        (listener,) = gw.resources[eg_xds.LISTENER_TYPE].values()
        hcm = listener["filter_chains"][0]["filters"][0]["typed_config"]
        # RDS -> the same route configuration inline.
        hcm["route_config"] = gw.resources[eg_xds.ROUTE_TYPE][hcm.pop("rds")["route_config_name"]]
        boot = {
            "node": {"id": "edge", "cluster": "edge"},
            "admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": 0}}},
            "static_resources": {"listeners": [listener], "clusters": clusters},
        }
        return boot, errors

    # -- stacks --------------------------------------------------------------

    def two_hop(self, flavour: str) -> dict:
        if flavour in self.stacks:
            return self.stacks[flavour]
        work = self.tmp / flavour
        istio = "1.29" if flavour == "wasmplugin" else "1.30"
        docs = flavour_docs(self.root, flavour if flavour in FIELD_FLAVOURS else "trafficextension")
        app = App()
        relay = mesh_run.Relay(self.leaves["relay"], self.pki.ca_cert)
        plain = RawTcpRecorder()
        for s in (app.server, relay, plain):
            s.start()
            self._stop.append(s.stop)
        receiver_boot = self.istio_receiver_boot(docs, work / "receiver", app.port, istio)
        if flavour == "envoy-gateway":
            sender_boot, errors = self.gateway_boot(docs, relay.port, plain.port)
            assert errors == [], errors
            listener, tls = sender_boot["static_resources"]["listeners"][0]["name"], True
        else:
            sender_boot = self.istio_sender_boot(docs, work / "sender", relay.port, plain.port, istio)
            listener, tls = "sidecar_outbound", False
        sender = mesh_run.new_envoy(sender_boot, work / "sender", self.env, "sender")
        receiver = mesh_run.new_envoy(receiver_boot, work / "receiver", self.env, "receiver")
        self._stop += [sender.stop, receiver.stop]
        mesh_run.start_envoys([sender, receiver])
        a = mesh_run.Hop(sender, listener, sender.listener_port(listener), tls)
        b = mesh_run.Hop(receiver, "sidecar_inbound", receiver.listener_port("sidecar_inbound"), True)
        relay.forward_port = b.port
        stack = {"a": a, "b": b, "relay": relay, "app": app, "plain": plain, "docs": docs, "flavour": flavour}
        self.stacks[flavour] = stack
        return stack


def _guard_config(epp: dict) -> dict:
    for jp in epp["spec"]["jsonPatches"]:
        if jp["operation"].get("path") == "/upstream_http_filters":
            return jp["operation"]["value"][0]["typed_config"]["config"]
    raise KeyError("no upstream guard in the EnvoyPatchPolicy")


def _module_pin(epp: dict) -> str:
    return _guard_config(epp)["vm_config"]["code"]["remote"]["sha256"]


@pytest.fixture(scope="module")
def topology(tmp_path_factory, make_oci, wasm_bytes):
    t = Topology(tmp_path_factory.mktemp("fields"), make_oci)
    yield t
    t.close()


@pytest.fixture(params=FLAVOURS)
def hops(request, topology):
    stack = topology.two_hop(request.param)
    request.node.stash[SHOWN_ENVOYS] = [stack["a"].envoy, stack["b"].envoy]
    return stack


def send(stack, method: str, path: str, **kw) -> client.Response:
    """A request of the app (Istio: to the relay's host through the sidecar)
    or of a client of the Gateway (over TLS)."""
    host = RELAY_HOST if stack["flavour"] != "envoy-gateway" else "edge.example.com"
    return stack["a"].request(method, path, ca=stack["relay"].ca, host=kw.pop("host", host), **kw)


def relay_cluster(stack) -> str:
    return EG_RELAY_CLUSTER if stack["flavour"] == "envoy-gateway" else RELAY_CLUSTER


def events(envoy, kind: str) -> list[dict]:
    out = []
    for line in envoy.plugin_lines():
        if "dpp_event " in line:
            event = json.loads(line.split("dpp_event ", 1)[1])
            if event["event"] == kind:
                out.append(event)
    return out


# --- the relay sees envelopes only ---------------------------------------------


@pytest.mark.parametrize("op", ["getOrder", "getOrderBuyerInfo"])
def test_the_relay_sees_envelopes_only(hops, op):
    path, doc = OPERATIONS[op]
    pii = pii_values(doc)
    assert pii, "the payload must carry PII for this test to mean anything"
    seen = len(hops["relay"].log)
    # Response path: the receiver encrypts, the sender decrypts.
    r = send(hops, "GET", path)
    assert r.status == 200, r.body
    assert r.json() == doc, "the client gets the original back"
    # Request path: the sender encrypts, the receiver decrypts (the app echoes it).
    r = send(hops, "POST", path, body=json.dumps(doc), headers=JSON)
    assert r.status == 200, r.body
    assert r.json() == doc
    assert json.loads(hops["app"].server.requests[-1].body) == doc, "the trusted app gets the original"
    exchanges = hops["relay"].log[seen:]
    assert len(exchanges) == 2
    record = b"\n".join(e.raw() for e in exchanges)
    assert leaks(record, doc) == [], "the relay saw PII in plaintext"
    # Each PII field crossed as a string that is not its value: an envelope.
    for e in exchanges:
        body = json.loads(e.request.body or e.response_body)
        assert body != doc and body.keys() == doc.keys()
        assert e.response_headers.get("cache-control") == "no-store"
    for envoy in (hops["a"].envoy, hops["b"].envoy):
        assert leaks(envoy.log().encode(), doc) == [], "an Envoy log carries PII"


# --- the three filters, in order, on both directions ---------------------------


def test_the_running_chains_have_response_hold_dpp_guard_request_hold_in_order(hops):
    for hop in (hops["a"], hops["b"]):
        got = mesh_run.roles(mesh_run.http_filters_of(hop.envoy, hop.listener), hold_code)
        core = [r for r in got if r != "other"]
        assert core == ["response_hold", "dpp_guard", "request_hold", "router"], (hop.listener, got)


def test_a_refused_response_body_reaches_the_client_as_502_not_a_reset(hops):
    # At the sender: the relay answers a plain value where an envelope belongs.
    hops["relay"].tamper_response = ScriptedResponse(headers=dict(JSON), body=PLAIN_VALUE)
    r = send(hops, "GET", BUYER_INFO_PATH)
    assert r.status == 502, r.body
    assert r.json()["error"] == "envelope_rejected"
    assert b"injected" not in r.body, "nothing of the refused response is forwarded"
    assert "x-dpp-guard-hold" not in r.headers
    (event,) = events(hops["a"].envoy, "envelope_rejected")[-1:]
    assert event["detail"] == "response: not_an_envelope"
    # At the receiver: the app's answer cannot be processed (malformed
    # JSON); the relay gets the receiver's 502 and passes it on.
    hops["app"].next_response = ScriptedResponse(headers=dict(JSON), body=b'{"payload":')
    r = send(hops, "GET", BUYER_INFO_PATH)
    assert r.status == 502, r.body
    assert r.json()["error"] == "malformed_json"
    assert hops["relay"].log[-1].status == 502, "the receiver answered the relay with its 502, not a reset"
    assert b'{"payload":' not in hops["relay"].log[-1].response_body


def test_a_refused_request_never_starts_upstream(hops):
    a, b = hops["a"], hops["b"]
    # At the sender: a body that cannot be processed (not JSON).
    started = a.counter(f"cluster.{relay_cluster(hops)}.upstream_rq_total")
    seen = len(hops["relay"].server.requests)
    r = send(hops, "POST", BUYER_INFO_PATH, body="Jane Q. Buyer, 1200 Westlake", headers={"content-type": "text/plain"})
    assert r.status == 415, r.body
    assert r.json()["error"] == "unsupported_content_type"
    assert a.counter(f"cluster.{relay_cluster(hops)}.upstream_rq_total") == started, "a request started towards the relay"
    assert len(hops["relay"].server.requests) == seen
    # At the receiver: what the relay passes on carries a plain value where
    # an envelope belongs (a tampering relay).
    started = b.counter(f"cluster.{INBOUND_CLUSTER}.upstream_rq_total")
    seen = len(hops["app"].server.requests)
    r = b.request("POST", BUYER_INFO_PATH, ca=hops["relay"].ca, headers=JSON, body=PLAIN_VALUE)
    assert r.status == 502, r.body
    assert r.json()["error"] == "envelope_rejected"
    assert b.counter(f"cluster.{INBOUND_CLUSTER}.upstream_rq_total") == started, "a request started towards the app"
    assert len(hops["app"].server.requests) == seen
    # A path the receiver's policy does not list is not served to the relay.
    r = b.request("GET", "/internal/orders/export", ca=hops["relay"].ca)
    assert r.status == 404 and r.json()["error"] == "no_route", r.body
    assert len(hops["app"].server.requests) == seen


# --- the upstream TLS guard ------------------------------------------------------


def test_the_upstream_guard_refuses_a_plaintext_upstream_with_zero_bytes(hops):
    plain = hops["plain"]
    if hops["flavour"] == "envoy-gateway":
        r = send(hops, "GET", "/plain/v0/orders")
    else:
        r = send(hops, "GET", "/v0/orders", host=PLAIN_HOST)
    assert r.status == 502, r.body
    assert r.json()["error"] == "upstream_not_tls"
    assert plain.wait_for_connection() >= 1, "Envoy never connected: the test proves nothing"
    assert bytes(plain.data) == b"", "request bytes reached the plaintext upstream"
    assert events(hops["a"].envoy, "upstream_plaintext_refused")
    assert hops["a"].counter("wasmcustom.dpp_guard.upstream.refused_new_connection") >= 1


# --- the order matters: a broken copy fails ----------------------------------------


def test_holds_in_the_wrong_order_turn_a_refusal_into_a_reset(topology, tmp_path):
    """Control for the order checks above: with the two TrafficExtension
    holds' priorities swapped (request hold before dpp_guard, response hold
    after it), a refused response body is a reset and a refused request
    has already started upstream."""
    docs = mesh_run.swap_hold_priorities(flavour_docs(topology.root, "trafficextension"))
    relay = RecordingHttpServer(tls=topology.leaves["relay"],
                                responder=lambda req: ScriptedResponse(headers=dict(JSON), body=PLAIN_VALUE))
    relay.start()
    try:
        boot = topology.istio_sender_boot(docs, tmp_path, relay.port, relay.port, "1.30")
        envoy = mesh_run.new_envoy(boot, tmp_path, topology.env, "sender")
        mesh_run.start_envoys([envoy])
        try:
            hop = mesh_run.Hop(envoy, "sidecar_outbound", envoy.listener_port("sidecar_outbound"))
            got = mesh_run.roles(mesh_run.http_filters_of(envoy, hop.listener), hold_code)
            assert [r for r in got if r != "other"] == ["request_hold", "dpp_guard", "response_hold", "router"]
            conn = http.client.HTTPConnection("127.0.0.1", hop.port, timeout=15)
            try:
                conn.putrequest("GET", BUYER_INFO_PATH, skip_host=True)
                conn.putheader("host", RELAY_HOST)
                conn.endheaders()
                r = conn.getresponse()
                # The headers left before the body was checked: a 200, with
                # the internal hold mark nobody removed...
                assert r.status == 200
                assert r.getheader("x-dpp-guard-hold") == "1"
                # ... then the refusal can only reset the stream.
                with pytest.raises((http.client.HTTPException, ConnectionError)):
                    r.read()
            finally:
                conn.close()
            r = hop.request("POST", BUYER_INFO_PATH, host=RELAY_HOST, body="not json", headers={"content-type": "text/plain"})
            assert r.status == 415
            assert hop.counter(f"cluster.{RELAY_CLUSTER}.upstream_rq_total") >= 1, "the request had started upstream"
        finally:
            envoy.stop()
    finally:
        relay.stop()


def test_wasmplugin_holds_keep_their_place_under_istio_1_30_naming(topology):
    """Istio 1.30 renames a WasmPlugin's filter (it becomes a translated
    TrafficExtension); the EnvoyFilter holds anchor on the chain's ends, so
    the order holds on both sides under either naming."""
    docs = flavour_docs(topology.root, "wasmplugin")
    for istio in ("1.29", "1.30"):
        for ns, cls, port in (("orders", istio_xds.SIDECAR_OUTBOUND, 80), ("fulfillment", istio_xds.SIDECAR_INBOUND, 8080)):
            gen = istio_xds.build_http_filters(docs, istio_xds.Sidecar(ns, pod_labels(docs, ns)), cls, port, istio)
            core = [r for r in mesh_run.roles(gen.http_filters, hold_code) if r != "other"]
            assert core == ["response_hold", "dpp_guard", "request_hold", "router"], (istio, ns, core)


# --- Envoy Gateway: the guard's module and the patches ------------------------------


def test_gateway_guard_with_a_module_that_fails_its_pin_refuses_everything(topology, tmp_path):
    """The EnvoyPatchPolicy pins plugin.wasm's sha256; a module that does
    not match (a stale pin, a tampered artifact server) is not loaded and the
    guard, failure_policy FAIL_CLOSED, refuses every request: nothing is
    sent upstream."""
    plain = RawTcpRecorder().start()
    try:
        docs = flavour_docs(topology.root, "trafficextension")
        # One retry instead of the shipped ten: a module that fails its pin
        # fails every retry, and the listener is not served while Envoy
        # retries (with backoff up to 30 s): the test need not wait it out.
        boot, errors = topology.gateway_boot(docs, plain.port, plain.port, module_pin="0" * 64, fetch_retries=1)
        assert errors == []
        envoy = mesh_run.new_envoy(boot, tmp_path, topology.env, "gateway")
        mesh_run.start_envoys([envoy])
        try:
            port = envoy.listener_port(boot["static_resources"]["listeners"][0]["name"])
            r = client.request(port, "GET", "/plain/v0/orders", ca=topology.pki.ca_cert, host="edge.example.com")
            assert r.status >= 500
            assert bytes(plain.data) == b"", "request bytes reached the upstream"
            assert envoy.stats().get("wasm.remote_load_fetch_failures", 0) >= 1
        finally:
            envoy.stop()
    finally:
        plain.stop()


def test_patch_policy_reports_a_hold_whose_anchor_is_gone(topology):
    """If the EnvoyExtensionPolicy's filter is not where the patch looks for
    it (policy renamed, another Gateway), Envoy Gateway skips that patch and
    says so in the policy status: the translation must not hide it."""
    docs = flavour_docs(topology.root, "trafficextension")
    (eep,) = [d for d in docs if d["kind"] == "EnvoyExtensionPolicy"]
    (epp,) = [d for d in docs if d["kind"] == "EnvoyPatchPolicy"]
    eep = json.loads(json.dumps(eep))
    eep["metadata"]["name"] = "dpp-guard-v2"
    gw = eg_xds.translate(eep, "https", {}, [{"match": {"prefix": "/"}, "route": {"cluster": "c"}}], "https://x/y.wasm", "0" * 64)
    errors = eg_xds.apply_patch_policy(gw, epp)
    assert len(errors) == 1 and "no jsonPointers" in errors[0], errors


def test_the_rejected_policy_alert_covers_every_shipped_plugins_ecds_name(topology):
    """DppGuardPolicyRejected reads Envoy's ECDS counter of the dpp_guard
    filter (a plugin that refused its policy exports nothing else). Its
    name carries the filter's resource name, which Istio builds from the
    resource (and renamed in 1.30): the alert must match every one, as
    Envoy's Prometheus output spells it (prefix envoy_, every character
    outside [a-zA-Z0-9_] turned into _)."""
    import re

    from test_deploy_alerts import alert_regex

    rx = alert_regex("DppGuardPolicyRejected")
    names = set()
    for flavour in FIELD_FLAVOURS:
        docs = flavour_docs(topology.root, flavour)
        for istio in ("1.29", "1.30"):
            names |= {e.resource_name for e in istio_xds.extensions(docs, istio) if "wasm" in e.spec}
    assert len(names) >= 6, names
    for name in names:
        prom = "envoy_" + re.sub(r"[^a-zA-Z0-9_]", "_", f"extension_config_discovery.http_filter.{name}.update_rejected")
        assert re.fullmatch(rx, prom), prom


def test_a_module_that_fails_its_pin_leaves_the_receiver_refusing_everything(topology, tmp_path):
    """istio-agent checks the image against the pinned digest; on a mismatch
    it hands Envoy a deny-all RBAC filter in dpp_guard's place (FAIL_CLOSE),
    so the receiving side refuses every request instead of passing
    envelopes, or anything else, to the app unchecked."""
    docs = json.loads(json.dumps(flavour_docs(topology.root, "trafficextension")))
    (plugin,) = [d for d in docs if d["kind"] == "TrafficExtension" and d["metadata"]["name"] == "dpp-guard-ingress"]
    plugin["spec"]["wasm"]["sha256"] = "0" * 64
    app = App()
    app.server.start()
    try:
        boot = topology.istio_receiver_boot(docs, tmp_path, app.port, "1.30")
        envoy = mesh_run.new_envoy(boot, tmp_path, topology.env, "receiver")
        mesh_run.start_envoys([envoy])
        try:
            port = envoy.listener_port("sidecar_inbound")
            for method, path, body in (("GET", BUYER_INFO_PATH, None), ("POST", BUYER_INFO_PATH, PLAIN_VALUE), ("GET", "/healthz", None)):
                r = client.request(port, method, path, ca=topology.pki.ca_cert, body=body, headers=JSON if body else None)
                assert r.status == 403, (method, path, r.status, r.body)
            assert app.server.requests == [], "a request reached the app without dpp_guard"
        finally:
            envoy.stop()
    finally:
        app.server.stop()
