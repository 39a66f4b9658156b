#!/usr/bin/env python3
"""Envoy CPU time per request, per configuration: a figure a busy machine blurs
far less than req/s.

wrk on a machine other jobs share measures the machine as much as the filter.
This measures what the filter costs Envoy: each configuration's Envoy runs
the same requests (POST of the benchmark order, a few keep-alive connections
in parallel), and the runner reads the CPU time the Envoy process spent
(all threads, nanoseconds from /proc/<pid>/task/*/schedstat) before and after.
Rounds interleave the configurations; each figure is the median over rounds.

When the proxy is the bottleneck its throughput is about 1 / (CPU per
request), so `(b) / (x)` of the CPU figures estimates the req/s ratio
`(x) / (b)` of `make bench` without its noise. `make bench` remains the
measurement of record.

    .venv/bin/python bench/cpu.py --only e,i --requests 2000 --rounds 5
"""

import argparse
import http.client
import json
import os
import shutil
import statistics
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import configs as C  # noqa: E402
import envoy as E  # noqa: E402
import run as R  # noqa: E402


def cpu_ns(pid):
    """CPU time of every thread of `pid`, in nanoseconds."""
    total = 0
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
                total += int(f.read().split()[0])
        except (OSError, ValueError, IndexError):
            pass
    return total


def drive(port, path, body, requests, connections):
    """`requests` POSTs over `connections` keep-alive connections; all must be 200."""
    per = [requests // connections + (1 if i < requests % connections else 0) for i in range(connections)]
    errors = []

    def worker(n):
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        try:
            for _ in range(n):
                conn.request("POST", path, body=body, headers={"content-type": "application/json"})
                r = conn.getresponse()
                r.read()
                if r.status != 200:
                    errors.append(r.status)
                    return
        finally:
            conn.close()

    threads = [threading.Thread(target=worker, args=(n,)) for n in per]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise RuntimeError(f"status {errors[0]}")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", default="e,i", help="configurations besides the null filter (b)")
    ap.add_argument("--requests", type=int, default=2000, help="requests per configuration and round")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--connections", type=int, default=4)
    ap.add_argument("--json", help="also write the figures to this file")
    ap.add_argument("--envoy", default=os.path.join(R.ROOT, ".venv", "bin", "envoy"))
    args = ap.parse_args()

    keys = ["b"] + [k for k in args.only.split(",") if k and k != "b"]
    configs = {c.key: c for c in C.CONFIGS}
    unknown = [k for k in keys if k not in configs]
    if unknown:
        raise SystemExit(f"unknown configuration(s): {unknown}")
    workdir = tempfile.mkdtemp(prefix="dpp-cpu-")
    envoys, recorder, upstream = [], None, None
    try:
        ctx = R.Ctx(workdir)
        pki = R.make_pki(workdir)
        recorder = R.Recorder()
        ctx.recorder = recorder
        upstream = E.Envoy(args.envoy, "upstream", E.upstream_config('{"ok":true}', pki), workdir,
                           concurrency=1).wait_ready()
        up_plain, up_tls = upstream.listener_port("up_plain"), upstream.listener_port("up_tls")
        running = {}
        for k in keys:
            cfg = configs[k]
            proxy = E.proxy_config(
                cfg.key, cfg.filters(ctx), up_tls if cfg.tls_upstream else up_plain,
                upstream_tls_ca=pki["ca"] if cfg.tls_upstream else None, recorder_port=recorder.port,
                upstream_http_filters=cfg.upstream_filters(ctx) if cfg.upstream_filters else None,
                access_log=cfg.access_log(ctx) if cfg.access_log else None,
            )
            e = E.Envoy(args.envoy, k, proxy, workdir, concurrency=1, env={**ctx.env, **cfg.env})
            envoys.append(e)
            running[k] = (cfg, e)
        for k, (cfg, e) in running.items():
            e.wait_ready()
            e.port = e.listener_port("bench")
            ctx.envoys[k] = e
            e.body = cfg.body(ctx)
            # Warm-up: connections, V8 tier-up.
            drive(e.port, cfg.path, e.body, 500, args.connections)
        per_request = {k: [] for k in keys}
        for rnd in range(args.rounds):
            order = keys[rnd % len(keys):] + keys[:rnd % len(keys)]
            for k in order:
                cfg, e = running[k]
                before = cpu_ns(e.pid())
                drive(e.port, cfg.path, e.body, args.requests, args.connections)
                # Envoy finishes the last access log line after the response.
                time.sleep(0.05)
                per_request[k].append((cpu_ns(e.pid()) - before) / args.requests / 1000.0)
            print(f"round {rnd + 1}/{args.rounds}: "
                  + "  ".join(f"({k}) {per_request[k][-1]:.1f}" for k in keys), flush=True)
        med = {k: statistics.median(v) for k, v in per_request.items()}
        print("\nEnvoy CPU µs per request (median of rounds); Δ over (b); (b)/(x) estimates req/s ÷ (b):")
        for k in keys:
            print(f"  ({k}) {configs[k].label:55s} {med[k]:7.1f} µs  Δ {med[k] - med['b']:+6.1f} µs"
                  f"  (b)/(x) {med['b'] / med[k]:.2f}")
        if args.json:
            with open(args.json, "w") as f:
                json.dump({"cpu_us_per_request": med, "rounds": per_request,
                           "requests": args.requests, "connections": args.connections}, f, indent=1)
    finally:
        for e in envoys:
            e.stop()
        if upstream:
            upstream.stop()
        if recorder:
            recorder.stop()
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
