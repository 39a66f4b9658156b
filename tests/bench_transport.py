"""Latency the upstream TLS guard adds, measured against a real Envoy.

Not a test (nothing is asserted on time). Run after `make build venv`:

    .venv/bin/python tests/bench_transport.py [REQUESTS]

Four runs of REQUESTS sequential GETs over one kept-alive downstream TLS
connection: with and without the guard in the Router's
upstream_http_filters, on pooled upstream connections and with a new
upstream connection for every request (max_requests_per_connection: 1).
Prints mean / p50 / p99 client-side latency in milliseconds.
"""
from __future__ import annotations

import http.client
import ssl
import statistics
import sys
import tempfile
import time
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))

from support.envoy import Envoy, render, write_ecds  # noqa: E402
from support.pki import TestPki  # noqa: E402
from support.stack import GuardStack  # noqa: E402


class BenchStack(GuardStack):
    def __init__(self, pki, guard: bool, new_connection_each: bool, **kw):
        super().__init__(pki, **kw)
        self.guard = guard
        self.new_connection_each = new_connection_each

    def start(self):
        self.service.start()
        values = self.values()
        write_ecds(self.ecds, values["DPP_GUARD_ECDS"], values)
        write_ecds(self.upstream_guard_ecds, values["DPP_UPSTREAM_GUARD_ECDS"], values)
        doc = yaml.safe_load(render(self.bootstrap, values))
        hcm = doc["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"]
        router = hcm["http_filters"][-1]["typed_config"]
        if not self.guard:
            router["upstream_http_filters"] = [f for f in router["upstream_http_filters"]
                                               if f["name"] != "dpp_upstream_guard"]
        if self.new_connection_each:
            doc["static_resources"]["clusters"][0]["max_requests_per_connection"] = 1
        self.envoy = Envoy(yaml.safe_dump(doc), self.workdir).start()
        self.port = self.envoy.listener_port("dpp_ingress")
        return self


def run(pki, guard: bool, new_conn: bool, n: int) -> list[float]:
    with BenchStack(pki, guard, new_conn, workdir=Path(tempfile.mkdtemp(prefix="dpp-bench-"))) as stack:
        ctx = ssl.create_default_context(cafile=str(pki.ca_cert))
        conn = http.client.HTTPSConnection("127.0.0.1", stack.port, context=ctx, timeout=10)
        times = []
        for i in range(n + 20):
            t = time.perf_counter()
            conn.request("GET", f"/catalog/{i}", headers={"host": "localhost"})
            r = conn.getresponse()
            r.read()
            assert r.status == 200, r.status
            if i >= 20:  # warm-up excluded
                times.append((time.perf_counter() - t) * 1000)
        conn.close()
        return times


def main():
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 300
    pki = TestPki(Path(tempfile.mkdtemp(prefix="dpp-bench-pki-")))
    print(f"{n} sequential GETs each; client-side latency in ms")
    for new_conn in (False, True):
        for guard in (False, True):
            t = sorted(run(pki, guard, new_conn, n))
            label = f"{'new upstream connection' if new_conn else 'pooled upstream':24} " \
                    f"{'with guard' if guard else 'no guard':10}"
            print(f"{label} mean {statistics.mean(t):6.2f}  p50 {t[len(t) // 2]:6.2f}  "
                  f"p99 {t[int(len(t) * 0.99) - 1]:6.2f}")


if __name__ == "__main__":
    main()
