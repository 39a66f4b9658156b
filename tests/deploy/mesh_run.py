"""Runs the translated manifests (istio_xds.py, eg_xds.py) in real Envoys,
in the untrusted-hop topology of field encryption:

    app --HTTP--> sender (Envoy: orders-api sidecar, or the Envoy Gateway) --TLS-->
        relay (untrusted, records everything) --TLS--> receiver (Envoy:
        fulfillment sidecar, inbound) --HTTP--> app (the trusted service)

The registry is the OCI layout `make oci` wrote (istio-agent's and Envoy
Gateway's fetch: manifest digest checked against the pin, plugin.wasm taken
out of the layer); module downloads over HTTPS come from a local TLS server
whose certificate names the hosts the manifests use; DNS names of clusters
become 127.0.0.1 ports. Everything else Envoy reads is the translation.
"""

from __future__ import annotations

import base64
import copy
import hashlib
import http.server
import json
import secrets
import ssl
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

import yaml

import oci_image
from support import client
from support.envoy import Envoy
from support.pki import Leaf, TestPki
from support.twohop import RelayExchange
from support.upstream import ReceivedRequest, RecordingHttpServer, ScriptedResponse

IMAGE_REPO = "registry.example.com/dpp-guard/dpp-guard"
HCM_TYPE = "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager"
UPSTREAM_TLS = "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext"
DOWNSTREAM_TLS = "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext"


def keys_env() -> dict[str, str]:
    """A keyring and a log key made for this run (the manifests name the
    variables; the values would come from the Secret). Sender and receiver
    share the keyring, as the two Secrets must."""
    key = base64.urlsafe_b64encode(secrets.token_bytes(32)).decode().rstrip("=")
    return {"DPP_GUARD_KEYS": f"primary=k1 k1={key}", "DPP_GUARD_LOG_KEY": secrets.token_hex(32)}


class OciRegistry:
    """The registry behind `oci://registry.example.com/dpp-guard/dpp-guard:TAG`:
    the image layout `make oci` wrote."""

    def __init__(self, layout: Path, cache: Path):
        self.layout = layout
        self.cache = cache
        cache.mkdir(parents=True, exist_ok=True)
        self.fetches: list[str] = []

    def pull(self, ref: str, sha256_hex: str) -> bytes:
        """Istio's and Envoy Gateway's fetch: the image's manifest digest
        must equal the pin, the module comes out of the layer."""
        ref = ref.removeprefix("oci://")
        repo, _, tag = ref.rpartition(":")
        if repo != IMAGE_REPO:
            raise oci_image.ImageError(f"no repository {repo} in this registry")
        digest, module = oci_image.istio_accepts(self.layout, tag)
        if sha256_hex and digest != "sha256:" + sha256_hex:
            raise oci_image.ImageError(f"checksum mismatch: image {digest}, pinned sha256:{sha256_hex}")
        self.fetches.append(ref)
        return module

    def fetch(self, url: str, sha256_hex: str) -> Path:
        """istio-agent: fetch, verify, write to its cache, return the file."""
        module = self.pull(url, sha256_hex)
        path = self.cache / (hashlib.sha256(module).hexdigest() + ".wasm")
        path.write_bytes(module)
        return path


class ModuleServer:
    """An HTTPS server that serves module bytes by path: Envoy Gateway's Wasm
    server and the artifact server of the EnvoyPatchPolicy's guard."""

    def __init__(self, leaf: Leaf):
        self.files: dict[str, bytes] = {}
        self.hits: list[str] = []
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self):  # noqa: N802
                outer.hits.append(self.path)
                body = outer.files.get(self.path)
                self.send_response(200 if body is not None else 404)
                self.send_header("content-length", str(len(body or b"")))
                self.end_headers()
                self.wfile.write(body or b"")

            def log_message(self, *args):
                pass

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(leaf.cert, leaf.key)
        self._server.socket = ctx.wrap_socket(self._server.socket, server_side=True)
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def start(self) -> "ModuleServer":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()


class Relay:
    """The untrusted relay: a TLS server that forwards every request to the
    receiving side over TLS and keeps a copy of everything it saw.
    `tamper_response`, when set, replaces the next response it passes back."""

    def __init__(self, leaf: Leaf, ca: Path, forward_host: str = "fulfillment.fulfillment.svc.cluster.local"):
        self.ca = ca
        self.forward_host = forward_host
        self.forward_port = 0
        self.log: list[RelayExchange] = []
        self.tamper_response: Optional[ScriptedResponse] = None
        self._lock = threading.Lock()
        self.server = RecordingHttpServer(tls=leaf, responder=self._forward)
        self.port = self.server.port

    def _forward(self, req: ReceivedRequest) -> ScriptedResponse:
        exchange = RelayExchange(req)
        headers = {k: v for k, v in req.headers.items() if k in ("content-type", "content-encoding", "accept-encoding")}
        r = client.request(self.forward_port, req.method, req.path, ca=self.ca, headers=headers,
                           body=req.body if req.body else None, host=self.forward_host)
        exchange.status, exchange.response_headers, exchange.response_body = r.status, r.headers, r.body
        with self._lock:
            self.log.append(exchange)
            tampered, self.tamper_response = self.tamper_response, None
        if tampered is not None:
            return tampered
        keep = {k: v for k, v in r.headers.items() if k in ("content-type", "content-encoding", "cache-control")}
        return ScriptedResponse(status=r.status, headers=keep, body=r.body)

    def record(self) -> bytes:
        with self._lock:
            return b"\n".join(e.raw() for e in self.log)

    def start(self) -> "Relay":
        self.server.start()
        return self

    def stop(self) -> None:
        self.server.stop()


# --- bootstraps -------------------------------------------------------------


def cluster(name: str, port: int, *, tls_ca: Optional[Path] = None, sni: Optional[str] = None) -> dict:
    c = {
        "name": name,
        "type": "STATIC",
        "connect_timeout": "5s",
        "load_assignment": {
            "cluster_name": name,
            "endpoints": [{"lb_endpoints": [{"endpoint": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": port}}}}]}],
        },
    }
    if tls_ca is not None:
        c["transport_socket"] = {
            "name": "envoy.transport_sockets.tls",
            "typed_config": {
                "@type": UPSTREAM_TLS,
                "sni": sni,
                "common_tls_context": {
                    "tls_params": {"tls_minimum_protocol_version": "TLSv1_2", "tls_maximum_protocol_version": "TLSv1_3"},
                    "validation_context": {
                        "trusted_ca": {"filename": str(tls_ca)},
                        "match_typed_subject_alt_names": [{"san_type": "DNS", "matcher": {"exact": sni}}],
                    },
                },
            },
        }
    return c


def downstream_tls(leaf: Leaf) -> dict:
    return {
        "@type": DOWNSTREAM_TLS,
        "common_tls_context": {
            "tls_params": {"tls_minimum_protocol_version": "TLSv1_2"},
            "tls_certificates": [{"certificate_chain": {"filename": str(leaf.cert)}, "private_key": {"filename": str(leaf.key)}}],
        },
    }


def sidecar_hcm(stat_prefix: str, http_filters: list[dict], virtual_hosts: list[dict]) -> dict:
    """The HCM settings Istio gives a sidecar listener that matter here
    (listener_builder.go buildHTTPConnectionManager, default mesh config)."""
    return {
        "@type": HCM_TYPE,
        "stat_prefix": stat_prefix,
        "codec_type": "AUTO",
        "normalize_path": True,
        "path_with_escaped_slashes_action": "KEEP_UNCHANGED",
        "use_remote_address": False,
        "stream_idle_timeout": "0s",
        "upgrade_configs": [{"upgrade_type": "websocket"}],
        "route_config": {"name": stat_prefix, "virtual_hosts": virtual_hosts},
        "http_filters": http_filters,
    }


def bootstrap(listener_name: str, hcm: dict, clusters: list[dict], tls: Optional[dict] = None) -> dict:
    chain = {"filters": [{"name": "envoy.filters.network.http_connection_manager", "typed_config": hcm}]}
    if tls is not None:
        chain["transport_socket"] = {"name": "envoy.transport_sockets.tls", "typed_config": tls}
    return {
        "node": {"id": listener_name, "cluster": listener_name},
        "admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": 0}}},
        "static_resources": {
            "listeners": [{"name": listener_name, "address": {"socket_address": {"address": "127.0.0.1", "port_value": 0}},
                           "filter_chains": [chain]}],
            "clusters": clusters,
        },
    }


def start_envoys(envoys: list[Envoy]) -> None:
    """Starts them side by side (each compiles the module on its own)."""
    errors: list[BaseException] = []

    def run(e: Envoy):
        try:
            e.start(timeout=120)
        except BaseException as exc:  # noqa: BLE001 - re-raised below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(e,)) for e in envoys]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        for e in envoys:
            e.stop()
        raise errors[0]


def new_envoy(boot: dict, workdir: Path, env: dict[str, str], name: str) -> Envoy:
    workdir.mkdir(parents=True, exist_ok=True)
    return Envoy(yaml.safe_dump(boot, sort_keys=False), workdir, env=env, name=name)


# --- reading a running Envoy ---------------------------------------------------


def http_filters_of(envoy: Envoy, listener: str) -> list[dict]:
    """The HCM http_filters of a listener as the running Envoy reports them."""
    dump = json.loads(envoy.admin_get("/config_dump?resource=static_listeners"))
    for item in dump["configs"]:
        lst = item["listener"]
        if lst["name"] == listener:
            chain = (lst.get("filter_chains") or [lst.get("default_filter_chain")])[0]
            return chain["filters"][0]["typed_config"]["http_filters"]
    raise KeyError(listener)


def roles(http_filters: list[dict], hold_code: Callable[[str], str]) -> list[str]:
    """Each filter's role, recognised by content, not name: `request_hold` /
    `response_hold` (the shipped Lua), `dpp_guard` (the Wasm filter with root
    id dpp_guard, inline or discovered), `router`, else `other`."""
    out = []
    for f in http_filters:
        tc = f.get("typed_config", {})
        src = tc.get("default_source_code", {}).get("inline_string") if "lua" in tc.get("@type", "") else None
        if src is not None and src == hold_code("request"):
            out.append("request_hold")
        elif src is not None and src == hold_code("response"):
            out.append("response_hold")
        elif tc.get("config", {}).get("root_id") == "dpp_guard" or "config_discovery" in f:
            out.append("dpp_guard")
        elif f["name"] == "envoy.filters.http.router":
            out.append("router")
        else:
            out.append("other")
    return out


def swap_hold_priorities(docs: list[dict]) -> list[dict]:
    """A broken copy: the two TrafficExtension holds trade priorities, so the
    request hold lands before dpp_guard and the response hold after it."""
    docs = copy.deepcopy(docs)
    holds = {d["metadata"]["name"]: d for d in docs if d["kind"] == "TrafficExtension" and "lua" in d["spec"]
             and d["metadata"]["namespace"] == "orders"}
    a, b = holds["dpp-guard-hold-request"]["spec"], holds["dpp-guard-hold-response"]["spec"]
    a["priority"], b["priority"] = b["priority"], a["priority"]
    return docs


@dataclass
class Hop:
    envoy: Envoy
    listener: str
    port: int = 0
    tls: bool = False

    def request(self, method: str, path: str, *, ca: Optional[Path] = None, **kw) -> client.Response:
        return client.request(self.port, method, path, ca=ca if self.tls else None, **kw)

    def counter(self, name: str) -> int:
        return self.envoy.stats().get(name, 0)


def new_pki(directory: Path) -> tuple[TestPki, dict[str, Leaf]]:
    pki = TestPki(directory)
    leaves = {
        "relay": pki.leaf("relay", dns=("relay.partner.example",)),
        "receiver": pki.leaf("receiver", dns=("fulfillment.fulfillment.svc.cluster.local", "localhost")),
        "gateway": pki.leaf("gateway", dns=("edge.example.com", "localhost")),
        "modules": pki.leaf("modules", dns=("artifacts.example.com", "envoy-gateway.envoy-gateway-system.svc.cluster.local")),
    }
    return pki, leaves
