"""The smallest real deployment: client -> Envoy with dpp_guard -> TLS service.

Used by the end-to-end tests and by `make demo` / `make run`, so the demo
shows exactly what the tests check.
"""
from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any, Callable, Mapping, Optional, Union

import yaml

from . import client
from .envoy import Envoy, guard_values, render, write_ecds
from .paths import ENVOY_DIR
from .pki import TestPki
from .upstream import RecordingHttpServer, Responder

Policy = Union[str, Mapping[str, Any]]


class GuardStack:
    """Starts a recording TLS service and an Envoy running dpp_guard in front of it."""

    def __init__(self, pki: TestPki, workdir: Optional[Path] = None, policy: Optional[Policy] = None,
                 responder: Optional[Responder] = None, env: Optional[Mapping[str, str]] = None,
                 bootstrap: Path = ENVOY_DIR / "dpp-guard.yaml",
                 ecds: Path = ENVOY_DIR / "dpp-guard.ecds.yaml",
                 upstream_guard_ecds: Path = ENVOY_DIR / "dpp-upstream-guard.ecds.yaml",
                 concurrency: int = 1,
                 edit_bootstrap: Optional[Callable[[dict], None]] = None):
        self.pki = pki
        self.workdir = Path(workdir or tempfile.mkdtemp(prefix="dpp-stack-"))
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.policy = policy
        self.env = dict(env or {})
        self.bootstrap = bootstrap
        self.concurrency = concurrency
        # Changes the rendered bootstrap in place before Envoy starts (a
        # test of a variant: HTTP/2 upstream, ALPN on the listener).
        self.edit_bootstrap = edit_bootstrap
        self.ecds = ecds
        self.upstream_guard_ecds = upstream_guard_ecds
        self.service_leaf = pki.leaf("service")
        self.listener_leaf = pki.leaf("listener")
        self.service = RecordingHttpServer(tls=self.service_leaf, responder=responder)
        self.envoy: Optional[Envoy] = None
        self.port = 0
        self.access_log_path = self.workdir / "access.log"

    def values(self) -> dict[str, Any]:
        return guard_values(
            LISTENER_CERT=self.listener_leaf.cert, LISTENER_KEY=self.listener_leaf.key,
            SERVICE_ADDRESS="127.0.0.1", SERVICE_PORT=self.service.port,
            SERVICE_SNI="localhost", SERVICE_CA=self.pki.ca_cert,
            DPP_GUARD_ECDS=self.workdir / "dpp-guard.ecds.yaml",
            DPP_UPSTREAM_GUARD_ECDS=self.workdir / "dpp-upstream-guard.ecds.yaml",
            ACCESS_LOG=self.access_log_path)

    def start(self) -> "GuardStack":
        self.service.start()
        values = self.values()
        # Both filters get the same policy document (docs/transport.md).
        policies = ({"dpp_guard": self.policy, "dpp_upstream_guard": self.policy}
                    if self.policy is not None else None)
        write_ecds(self.ecds, values["DPP_GUARD_ECDS"], values, policies)
        write_ecds(self.upstream_guard_ecds, values["DPP_UPSTREAM_GUARD_ECDS"], values, policies)
        config = render(self.bootstrap, values)
        if self.edit_bootstrap is not None:
            doc = yaml.safe_load(config)
            self.edit_bootstrap(doc)
            config = yaml.safe_dump(doc, sort_keys=False)
        self.envoy = Envoy(config, self.workdir, env=self.env,
                           concurrency=self.concurrency).start()
        self.port = self.envoy.listener_port("dpp_ingress")
        return self

    def stop(self) -> None:
        if self.envoy:
            self.envoy.stop()
        self.service.stop()

    def __enter__(self):
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(self, *exc):
        self.stop()

    def access_log(self) -> str:
        """What Envoy's access log (envoy/dpp-guard.yaml's `access_log`) wrote so far."""
        return self.access_log_path.read_text(errors="replace") if self.access_log_path.exists() else ""

    def request(self, method: str, path: str, **kw) -> client.Response:
        return client.request(self.port, method, path, ca=self.pki.ca_cert, **kw)
