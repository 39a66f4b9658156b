"""The untrusted-hop topology of field encryption, with real Envoys:

    client --TLS--> Envoy A --TLS--> relay --TLS--> Envoy B --TLS--> service
                    (encrypts         (untrusted,    (decrypts
                     request PII,      records        request PII,
                     decrypts          everything)    encrypts
                     response PII)                    response PII)

Envoy A and B run the shipped bootstrap envoy/dpp-guard-fields.yaml with
envoy/hop-a-encrypt.ecds.yaml and envoy/hop-b-decrypt.ecds.yaml; their
keyrings come from the DPP_GUARD_KEYS environment variable of each Envoy,
their log keys from DPP_GUARD_LOG_KEY (one per hop).

The relay can also play the adversary: `relay_path` rewrites the path of
every request it forwards to Envoy B (tests/test_adversary.py).
"""
from __future__ import annotations

import base64
import json
import os
import subprocess
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Optional

from . import client
from .paths import ENVOY_DIR, ROOT
from .pki import TestPki
from .stack import GuardStack
from .upstream import ReceivedRequest, Responder, ScriptedResponse

CLI = ROOT / "target" / "debug" / "dpp-guard"
HOP_A = ENVOY_DIR / "hop-a-encrypt.ecds.yaml"
HOP_B = ENVOY_DIR / "hop-b-decrypt.ecds.yaml"
BOOTSTRAP = ENVOY_DIR / "dpp-guard-fields.yaml"


def log_key() -> str:
    """A fresh log key: 32 random bytes, base64 (docs/logging.md)."""
    return base64.b64encode(os.urandom(32)).decode()


def keygen(key_id: str) -> str:
    """A fresh keyring entry `ID=KEY` from the project's own CLI."""
    out = subprocess.run([str(CLI), "keygen", key_id], check=True, capture_output=True, text=True)
    return out.stdout.strip()


@dataclass
class RelayExchange:
    """One exchange as the untrusted relay saw it."""
    request: ReceivedRequest
    status: int = 0
    response_headers: dict[str, str] = field(default_factory=dict)
    response_body: bytes = b""

    def raw(self) -> bytes:
        """Everything the relay could store, as bytes."""
        head = "\n".join(f"{k}: {v}" for k, v in self.request.headers.items())
        rhead = "\n".join(f"{k}: {v}" for k, v in self.response_headers.items())
        return b"\n".join([f"{self.request.method} {self.request.path}\n{head}".encode(),
                           self.request.body, f"{self.status}\n{rhead}".encode(), self.response_body])


# The relay as an adversary: (direction, path, body) -> the body it passes on.
Tamper = Callable[[str, str, bytes], bytes]


class TwoHop:
    """Starts service + Envoy B, then relay + Envoy A. `keys_a`/`keys_b` are
    the keyring texts of each Envoy (normally equal). `tamper`, when given,
    lets the relay rewrite each request body before B and each response body
    before A (the untrusted hop as the adversary)."""

    def __init__(self, pki: TestPki, workdir: Path, keys_a: str, keys_b: Optional[str] = None,
                 service: Optional[Responder] = None,
                 policy_a: Optional[Mapping[str, Any]] = None, policy_b: Optional[Mapping[str, Any]] = None,
                 bootstrap_b: Path = BOOTSTRAP, relay_path: Optional[Callable[[str], str]] = None,
                 tamper: Optional[Tamper] = None):
        self.pki = pki
        self.tamper = tamper
        # Both filters of each Envoy (dpp_guard and the upstream TLS guard)
        # read the same policy: the hop's shipped one unless overridden.
        policy_a = policy_a or json.loads((ENVOY_DIR / "policies" / "hop-a-encrypt.json").read_text())
        policy_b = policy_b or json.loads((ENVOY_DIR / "policies" / "hop-b-decrypt.json").read_text())
        self.relay_log: list[RelayExchange] = []
        self.relay_path = relay_path
        self._lock = threading.Lock()
        self.log_keys = {"a": log_key(), "b": log_key()}
        self.b = GuardStack(pki, workdir=workdir / "envoy-b", policy=policy_b, responder=service,
                            env={"DPP_GUARD_KEYS": keys_b if keys_b is not None else keys_a,
                                 "DPP_GUARD_LOG_KEY": self.log_keys["b"]},
                            ecds=HOP_B, bootstrap=bootstrap_b)
        self.a = GuardStack(pki, workdir=workdir / "envoy-a", policy=policy_a, responder=self._relay,
                            env={"DPP_GUARD_KEYS": keys_a, "DPP_GUARD_LOG_KEY": self.log_keys["a"]},
                            ecds=HOP_A, bootstrap=BOOTSTRAP)

    @property
    def service(self):
        return self.b.service

    @property
    def relay(self):
        return self.a.service

    def _relay(self, req: ReceivedRequest) -> ScriptedResponse:
        """The untrusted relay: forwards to Envoy B over TLS, keeps a copy of everything."""
        path = self.relay_path(req.path) if self.relay_path else req.path
        exchange = RelayExchange(ReceivedRequest(req.method, path, req.headers, req.body))
        headers = {k: v for k, v in req.headers.items()
                   if k in ("content-type", "content-encoding", "accept-encoding")}
        body = req.body
        if body and self.tamper:
            body = self.tamper("request", path, body)
        r = client.request(self.b.port, req.method, path, ca=self.pki.ca_cert,
                           headers=headers, body=body if body else None)
        exchange.status, exchange.response_headers, exchange.response_body = r.status, r.headers, r.body
        with self._lock:
            self.relay_log.append(exchange)
        keep = {k: v for k, v in r.headers.items() if k in ("content-type", "content-encoding", "cache-control")}
        out = r.body
        if out and self.tamper:
            out = self.tamper("response", path, out)
        return ScriptedResponse(status=r.status, headers=keep, body=out)

    def relay_record(self) -> bytes:
        with self._lock:
            return b"\n".join(e.raw() for e in self.relay_log)

    def start(self) -> "TwoHop":
        self.b.start()
        self.a.start()
        return self

    def stop(self) -> None:
        self.a.stop()
        self.b.stop()

    def envoys(self):
        return [s.envoy for s in (self.a, self.b) if s.envoy is not None]

    def request(self, method: str, path: str, **kw) -> client.Response:
        return self.a.request(method, path, **kw)
