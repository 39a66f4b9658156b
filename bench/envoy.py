"""Envoy processes and configurations for the benchmarks.

Every Envoy listens on 127.0.0.1 port 0 (the kernel picks a free port) and
writes its admin address to a file; the runner reads the real listener port
back from the admin API. Nothing here uses a fixed port, so benchmarks can run
while other Envoys (tests, other checkouts) run on the same machine.
"""

import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
import urllib.request

HCM = "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager"
ROUTER = "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"
WASM = "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm"
CODEC = "type.googleapis.com/envoy.extensions.filters.http.upstream_codec.v3.UpstreamCodec"
TLS_UP = "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext"
TLS_DOWN = "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext"
STRING_VALUE = "type.googleapis.com/google.protobuf.StringValue"
BUFFER = "type.googleapis.com/envoy.extensions.filters.http.buffer.v3.Buffer"
FILE_LOG = "type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog"


def wasm_filter(name, wasm_path, root_id, configuration, env_keys=(), vm_id=""):
    """An envoy.filters.http.wasm entry running `wasm_path` in V8."""
    vm = {
        "vm_id": vm_id,
        "runtime": "envoy.wasm.runtime.v8",
        "code": {"local": {"filename": os.path.abspath(wasm_path)}},
    }
    if env_keys:
        vm["environment_variables"] = {"host_env_keys": list(env_keys)}
    return {
        "name": "envoy.filters.http.wasm",
        "typed_config": {
            "@type": WASM,
            "config": {
                "name": name,
                "root_id": root_id,
                "configuration": {"@type": STRING_VALUE, "value": configuration},
                "vm_config": vm,
                # Fail closed: a broken VM must not pass requests unfiltered.
                "fail_open": False,
            },
        },
    }


def _listener(name, routes, http_filters, tls=None, access_log=None):
    hcm = {
        "@type": HCM,
        "stat_prefix": name,
        "codec_type": "AUTO",
        "route_config": {"virtual_hosts": [{"name": "all", "domains": ["*"], "routes": routes}]},
        "http_filters": http_filters,
    }
    if access_log:
        hcm["access_log"] = access_log
    chain = {"filters": [{"name": "envoy.filters.network.http_connection_manager", "typed_config": hcm}]}
    if tls:
        chain["transport_socket"] = {
            "name": "envoy.transport_sockets.tls",
            "typed_config": {
                "@type": TLS_DOWN,
                "common_tls_context": {
                    "tls_certificates": [
                        {"certificate_chain": {"filename": tls["cert"]}, "private_key": {"filename": tls["key"]}}
                    ]
                },
            },
        }
    return {
        "name": name,
        "address": {"socket_address": {"address": "127.0.0.1", "port_value": 0}},
        "filter_chains": [chain],
    }


def _admin():
    return {"address": {"socket_address": {"address": "127.0.0.1", "port_value": 0}}}


def upstream_config(body, tls):
    """The fast upstream: Envoy answering every request itself (direct_response).

    Two listeners, plaintext and TLS, same answer. Envoy's direct_response is
    far cheaper than proxying, so the upstream is not the bottleneck (the
    runner measures it on its own to show that).
    """
    routes = [
        {
            "match": {"prefix": "/"},
            "direct_response": {"status": 200, "body": {"inline_string": body}},
            "response_headers_to_add": [{"header": {"key": "content-type", "value": "application/json"}}],
        }
    ]
    # The buffer filter holds the request until its body is complete, so the
    # answer never overtakes the request: an HTTP/1.1 upstream that answers
    # early makes the proxy close the connection (no reuse, a new TCP/TLS
    # connection per request, which is not what is being measured).
    router = [
        {"name": "envoy.filters.http.buffer",
         "typed_config": {"@type": BUFFER, "max_request_bytes": 4 * 1024 * 1024}},
        {"name": "envoy.filters.http.router", "typed_config": {"@type": ROUTER}},
    ]
    return {
        "node": {"id": "bench-upstream", "cluster": "bench"},
        "admin": _admin(),
        "static_resources": {
            "listeners": [
                _listener("up_plain", routes, router),
                _listener("up_tls", routes, router, tls=tls),
            ]
        },
    }


def _cluster(name, port, tls_ca=None):
    c = {
        "name": name,
        "type": "STATIC",
        "connect_timeout": "2s",
        "load_assignment": {
            "cluster_name": name,
            "endpoints": [
                {"lb_endpoints": [{"endpoint": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": port}}}}]}
            ],
        },
    }
    if tls_ca:
        c["transport_socket"] = {
            "name": "envoy.transport_sockets.tls",
            "typed_config": {
                "@type": TLS_UP,
                "sni": "upstream.bench.test",
                "common_tls_context": {
                    "validation_context": {
                        "trusted_ca": {"filename": tls_ca},
                        "match_typed_subject_alt_names": [
                            {"san_type": "DNS", "matcher": {"exact": "upstream.bench.test"}}
                        ],
                    }
                },
            },
        }
    return c


def proxy_config(name, http_filters, upstream_port, upstream_tls_ca=None, recorder_port=None,
                 upstream_http_filters=None, access_log=None):
    """The Envoy under test: one listener, `http_filters` before the router.

    Requests go to the fast upstream; a request carrying `x-bench-record: 1`
    goes to the recording upstream instead, so the runner can check what a
    configuration really sends (encrypted fields, decrypted fields) before it
    measures it.
    """
    router = {"@type": ROUTER}
    if upstream_http_filters:
        router["upstream_http_filters"] = upstream_http_filters + [
            {"name": "envoy.filters.http.upstream_codec", "typed_config": {"@type": CODEC}}
        ]
    filters = list(http_filters) + [{"name": "envoy.filters.http.router", "typed_config": router}]
    routes = []
    clusters = [_cluster("upstream", upstream_port, upstream_tls_ca)]
    if recorder_port:
        routes.append(
            {
                "match": {"prefix": "/", "headers": [{"name": "x-bench-record", "string_match": {"exact": "1"}}]},
                "route": {"cluster": "recorder"},
                "name": "record",
            }
        )
        clusters.append(_cluster("recorder", recorder_port))
    routes.append({"match": {"prefix": "/"}, "route": {"cluster": "upstream"}, "name": "bench"})
    return {
        "node": {"id": f"bench-{name}", "cluster": "bench"},
        "admin": _admin(),
        "static_resources": {
            "listeners": [_listener("bench", routes, filters, access_log=access_log)],
            "clusters": clusters,
        },
    }


class Envoy:
    """One Envoy process; `stop()` always kills it (also from `__exit__`)."""

    def __init__(self, envoy_bin, name, config, workdir, concurrency=1, cpus=None, env=None, log_level=None):
        self.name = name
        self.dir = tempfile.mkdtemp(prefix=f"envoy-{name}-", dir=workdir)
        self.config_path = os.path.join(self.dir, "envoy.yaml")
        self.admin_path = os.path.join(self.dir, "admin.txt")
        self.log_path = os.path.join(self.dir, "envoy.log")
        with open(self.config_path, "w") as f:
            json.dump(config, f, indent=1)
        cmd = [
            envoy_bin, "-c", self.config_path,
            "--concurrency", str(concurrency),
            "--use-dynamic-base-id",
            "--admin-address-path", self.admin_path,
            "--log-level", log_level or os.environ.get("BENCH_ENVOY_LOG_LEVEL", "warn"),
            "--log-path", self.log_path,
        ]
        if cpus is not None and shutil.which("taskset"):
            cmd = ["taskset", "-c", cpus] + cmd
        self.proc = subprocess.Popen(
            cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            env={**os.environ, **(env or {})}, start_new_session=True,
        )
        self.admin = None

    def wait_ready(self, timeout=60):
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"envoy {self.name} exited ({self.proc.returncode}):\n{self.log_tail()}")
            if self.admin is None and os.path.exists(self.admin_path):
                addr = open(self.admin_path).read().strip()
                if addr:
                    self.admin = f"http://{addr}"
            if self.admin:
                try:
                    with urllib.request.urlopen(self.admin + "/ready", timeout=2) as r:
                        if r.status == 200:
                            return self
                except OSError:
                    pass
            time.sleep(0.1)
        raise RuntimeError(f"envoy {self.name} not ready after {timeout}s:\n{self.log_tail()}")

    def listener_port(self, listener_name):
        with urllib.request.urlopen(self.admin + "/listeners?format=json", timeout=5) as r:
            data = json.load(r)
        for ls in data.get("listener_statuses", []):
            if ls.get("name") == listener_name:
                return int(ls["local_address"]["socket_address"]["port_value"])
        raise RuntimeError(f"envoy {self.name}: no listener {listener_name}")

    def stats(self, prefix=""):
        with urllib.request.urlopen(self.admin + f"/stats?format=json&filter={prefix}", timeout=5) as r:
            return {s["name"]: s.get("value") for s in json.load(r).get("stats", []) if "name" in s}

    def log_tail(self, n=40):
        try:
            with open(self.log_path) as f:
                return "".join(f.readlines()[-n:])
        except OSError:
            return "(no log)"

    def log_size(self):
        try:
            return os.path.getsize(self.log_path)
        except OSError:
            return 0

    def log_since(self, offset):
        try:
            with open(self.log_path, errors="replace") as f:
                f.seek(offset)
                return f.read()
        except OSError:
            return ""

    def pid(self):
        return self.proc.pid

    def stop(self):
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
                self.proc.wait(timeout=10)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                try:
                    os.killpg(self.proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                self.proc.wait()
