"""Running a real Envoy for the deploy/ checks: a recording upstream, an
Envoy started from a bootstrap dict (admin and listener on free ports,
stopped also on failure), stats and requests."""

from __future__ import annotations

import base64
import http.server
import os
import secrets
import subprocess
import time
import urllib.error
import urllib.request
from contextlib import contextmanager
from pathlib import Path

import pytest
import yaml


class Recorder(http.server.ThreadingHTTPServer):
    """A plain upstream that counts the requests reaching it."""

    def __init__(self):
        self.hits = 0

        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802
                outer.hits += 1
                self.send_response(200)
                self.send_header("content-length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args):
                pass

        super().__init__(("127.0.0.1", 0), Handler)


def poll(fn, what: str, tries: int = 200):
    # Readiness polling with a bounded number of tries, not a timing assertion.
    for _ in range(tries):
        got = fn()
        if got:
            return got
        time.sleep(0.05)
    pytest.fail(f"envoy: {what} not ready")


@contextmanager
def envoy(envoy_bin: Path, tmp: Path, boot: dict, drop_env: tuple[str, ...] = ()):
    cfg = tmp / "envoy.yaml"
    cfg.write_text(yaml.safe_dump(boot))
    admin_file = tmp / "admin.txt"
    log = open(tmp / "envoy.log", "wb")
    # Keys made for this run only (the manifests name the variables; the
    # values would come from the Secret). The log key is required by the
    # shipped policy (logging.require_log_key).
    keyring = "primary=k1 k1=" + base64.urlsafe_b64encode(secrets.token_bytes(32)).decode().rstrip("=")
    env = dict(os.environ, DPP_GUARD_KEYS=keyring, DPP_GUARD_LOG_KEY=secrets.token_hex(32))
    for name in drop_env:
        env.pop(name, None)
    proc = subprocess.Popen(
        [str(envoy_bin), "-c", str(cfg), "--admin-address-path", str(admin_file), "--use-dynamic-base-id", "-l", "info"],
        stdout=log,
        stderr=subprocess.STDOUT,
        env=env,
    )
    try:
        def admin():
            if proc.poll() is not None:
                pytest.fail("envoy exited:\n" + (tmp / "envoy.log").read_text()[-3000:])
            return admin_file.exists() and admin_file.read_text().strip()

        addr = poll(admin, "admin address")

        def listener():
            admin()
            try:
                body = urllib.request.urlopen(f"http://{addr}/listeners", timeout=2).read().decode()
            except OSError:
                return None
            return body.split("::", 1)[1].strip() if "::" in body else None

        yield addr, poll(listener, "listener")
    finally:
        stop_process(proc)
        log.close()


def stop_process(proc: subprocess.Popen) -> None:
    """Terminate, wait up to 10 s, then kill: nothing a test started outlives it."""
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


HCM_TYPE = "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager"


def static_bootstrap(http_filters: list[dict], cluster: str, upstream_port: int, stat_prefix: str) -> dict:
    """Envoy bootstrap: admin and listener `guarded` on free loopback ports,
    every request routed to `cluster` (plaintext, 127.0.0.1:upstream_port)
    through `http_filters`."""
    hcm = {
        "@type": HCM_TYPE,
        "stat_prefix": stat_prefix,
        "route_config": {
            "virtual_hosts": [{"name": "v", "domains": ["*"], "routes": [{"match": {"prefix": "/"}, "route": {"cluster": cluster}}]}]
        },
        "http_filters": http_filters,
    }
    return {
        "node": {"id": "dpp-guard-test", "cluster": "dpp-guard-test"},
        "admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": 0}}},
        "static_resources": {
            "listeners": [
                {
                    "name": "guarded",
                    "address": {"socket_address": {"address": "127.0.0.1", "port_value": 0}},
                    "filter_chains": [{"filters": [{"name": "envoy.filters.network.http_connection_manager", "typed_config": hcm}]}],
                }
            ],
            "clusters": [
                {
                    "name": cluster,
                    "connect_timeout": "2s",
                    "load_assignment": {
                        "cluster_name": cluster,
                        "endpoints": [{"lb_endpoints": [{"endpoint": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": upstream_port}}}}]}],
                    },
                }
            ],
        },
    }


def stats(admin: str, filter: str = "extension_config_discovery") -> dict[str, str]:
    body = urllib.request.urlopen(f"http://{admin}/stats?filter={filter}", timeout=2).read().decode()
    return dict(line.split(": ", 1) for line in body.splitlines() if ": " in line)


def prometheus(admin: str) -> dict[str, float]:
    """Envoy's Prometheus exposition, as {series: value}."""
    body = urllib.request.urlopen(f"http://{admin}/stats/prometheus", timeout=2).read().decode()
    out = {}
    for line in body.splitlines():
        if line and not line.startswith("#"):
            series, _, value = line.rpartition(" ")
            out[series] = float(value)
    return out


def get(listener: str, path: str = "/orders/1") -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(f"http://{listener}{path}", timeout=5) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()
