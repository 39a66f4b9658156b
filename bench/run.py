#!/usr/bin/env python3
"""`make bench`: dpp-guard in Envoy under wrk, beside Envoy alone and reference filters.

One Envoy per configuration (bench/configs.py) runs for the whole run; wrk
visits them round-robin, several repetitions, and each figure is the median
over repetitions, so slow drift of the machine (other processes, thermal)
spreads over all configurations instead of biasing one.

Writes <out>/results.json, <out>/results.md and <out>/results.png.
"""

import argparse
import datetime
import http.client
import http.server
import json
import os
import platform
import secrets
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import configs as C  # noqa: E402
import envoy as E  # noqa: E402
import orders  # noqa: E402
import report  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LUA = os.path.join(ROOT, "bench", "wrk", "post.lua")
WASM_DIR = os.path.join(ROOT, "target", "wasm32-wasip1", "release")


class Ctx:
    """What configuration builders and checks may use."""

    def __init__(self, workdir, dpp_wasm=None):
        self.workdir = workdir
        self.wasm = {
            "null": os.path.join(WASM_DIR, "bench_null_filter.wasm"),
            "naive_json": os.path.join(WASM_DIR, "bench_naive_json_filter.wasm"),
            "naive_crypto": os.path.join(WASM_DIR, "bench_naive_crypto_filter.wasm"),
            "dpp_guard": dpp_wasm or os.path.join(WASM_DIR, "dpp_guard.wasm"),
        }
        for name, path in self.wasm.items():
            if not os.path.exists(path):
                raise SystemExit(f"missing {path}: run `make bench-build` first")
        self.order_doc = orders.order_document()
        self.order_body = orders.dumps(self.order_doc)
        # Fresh keys for every run; they live in the Envoy processes' environment only.
        # dpp-guard's keyring and log key reach the VM only through Envoy's
        # host_env_keys, as in a deployment.
        self.env = {
            "BENCH_NAIVE_KEY": secrets.token_hex(32),
            "DPP_BENCH_KEYS": C.keyring_text(secrets.token_bytes(32)),
            "DPP_BENCH_LOG_KEY": secrets.token_hex(32),
        }
        self.dpp_env_keys = ["DPP_BENCH_KEYS", "DPP_BENCH_LOG_KEY"]
        self.envoys = {}
        self.recorder = None

    def access_log_path(self, key):
        return os.path.join(self.workdir, f"access-{key}.log")

    def through(self, key, path, body):
        """What the upstream receives when `body` goes through configuration `key`.

        Lets one configuration's input be another's output (the decrypt path
        gets the envelopes the encrypt path made).
        """
        self.recorder.last = None
        status, _ = post(self.envoys[key].port, path, body, {"x-bench-record": "1"})
        if status != 200 or self.recorder.last is None:
            raise RuntimeError(f"configuration {key} did not forward the body (status {status})")
        return self.recorder.last["body"]

    def body_file(self, key, body):
        path = os.path.join(self.workdir, f"body-{key}.json")
        with open(path, "wb") as f:
            f.write(body)
        return path


# ---- the recording upstream used by the pre-measurement checks ---------------

class Recorder:
    """A tiny HTTP/1.1 upstream that remembers the last request it got."""

    def __init__(self):
        rec = self
        self.last = None

        class H(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self):
                n = int(self.headers.get("content-length") or 0)
                if self.headers.get("transfer-encoding", "").lower() == "chunked":
                    body = b""
                    while True:
                        size = int(self.rfile.readline().strip() or b"0", 16)
                        if size == 0:
                            self.rfile.readline()
                            break
                        body += self.rfile.read(size)
                        self.rfile.readline()
                else:
                    body = self.rfile.read(n)
                rec.last = {"headers": dict(self.headers), "body": body}
                out = b'{"ok":true}'
                self.send_response(200)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(out)))
                self.end_headers()
                self.wfile.write(out)

            def log_message(self, *a):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


def post(port, path, body, headers=None):
    req = urllib.request.Request(
        f"http://127.0.0.1:{port}{path}", data=body, method="POST",
        headers={"content-type": "application/json", **(headers or {})},
    )
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


# ---- PKI for the TLS upstream -------------------------------------------------

def make_pki(workdir):
    """A throwaway CA and server certificate for upstream.bench.test, made per run."""
    d = os.path.join(workdir, "pki")
    os.makedirs(d)
    ca_key, ca_crt = os.path.join(d, "ca.key"), os.path.join(d, "ca.crt")
    key, csr, crt = os.path.join(d, "up.key"), os.path.join(d, "up.csr"), os.path.join(d, "up.crt")
    ext = os.path.join(d, "ext.cnf")
    with open(ext, "w") as f:
        f.write("subjectAltName=DNS:upstream.bench.test\n")
    q = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL, "check": True}
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
                    "-nodes", "-keyout", ca_key, "-out", ca_crt, "-days", "2", "-subj", "/CN=bench-ca"], **q)
    subprocess.run(["openssl", "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                    "-keyout", key, "-out", csr, "-subj", "/CN=upstream.bench.test"], **q)
    subprocess.run(["openssl", "x509", "-req", "-in", csr, "-CA", ca_crt, "-CAkey", ca_key,
                    "-CAcreateserial", "-out", crt, "-days", "2", "-extfile", ext], **q)
    return {"ca": ca_crt, "cert": crt, "key": key}


# ---- wrk -----------------------------------------------------------------------

def cpu_layout():
    """Pin the Envoy under test to its own core; wrk and the upstream share the other.

    On this 2-core machine that makes the proxy the measured bottleneck and
    keeps the load generator from stealing its cycles. With fewer than 2 CPUs
    nothing is pinned.
    """
    n = os.cpu_count() or 1
    if n >= 2 and shutil.which("taskset"):
        return {"proxy": "1", "load": "0", "upstream": "0"}
    return {"proxy": None, "load": None, "upstream": None}


def run_wrk(port, path, body_file, seconds, connections, cpus):
    # wrk takes whole seconds only.
    seconds = max(1, int(round(seconds)))
    cmd = ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--latency", "-s", LUA,
           f"http://127.0.0.1:{port}{path}"]
    if cpus is not None:
        cmd = ["taskset", "-c", cpus] + cmd
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 60,
                         env={**os.environ, "BENCH_BODY": body_file})
    for line in out.stdout.splitlines():
        if line.startswith("BENCH_RESULT "):
            r = json.loads(line[len("BENCH_RESULT "):])
            r["rps"] = r["requests"] / (r["duration_us"] / 1e6) if r["duration_us"] else 0.0
            r["errors"] = sum(r[k] for k in ("connect_errors", "read_errors", "write_errors",
                                             "status_errors", "timeouts"))
            return r
    raise RuntimeError(f"wrk gave no result (rc={out.returncode}): {out.stderr.strip()[:500]}")


# ---- CPU accounting --------------------------------------------------------------

CLK_TCK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def process_cpu_seconds(pid):
    """User + system CPU time of process `pid`, all its threads, in seconds.

    The kernel leaves out time the hypervisor stole from the guest (steal
    time), so CPU per request is steadier than req/s on a shared VM. Not
    immune: a busy neighbour also slows each instruction, which counts.
    """
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / CLK_TCK
    except (OSError, IndexError, ValueError):
        return None


def steal_seconds(cpu):
    """Time the hypervisor ran something else while CPU `cpu` wanted to run."""
    if cpu is None:
        return None
    try:
        with open("/proc/stat") as f:
            for line in f:
                parts = line.split()
                if parts and parts[0] == f"cpu{cpu}":
                    return int(parts[8]) / CLK_TCK
    except (OSError, IndexError, ValueError):
        pass
    return None


def measured_run(e, cfg, seconds, conns, cpus):
    """One wrk run at Envoy `e`, with the proxy's CPU per request and the
    share of its core the hypervisor stole meanwhile."""
    pid, core = e.pid(), cpus["proxy"]
    cpu0, steal0, t0 = process_cpu_seconds(pid), steal_seconds(core), time.monotonic()
    r = run_wrk(e.port, cfg.path, e.body_file, seconds, conns, cpus["load"])
    cpu1, steal1, wall = process_cpu_seconds(pid), steal_seconds(core), time.monotonic() - t0
    r["proxy_cpu_us"] = ((cpu1 - cpu0) * 1e6 / r["requests"]
                         if cpu0 is not None and cpu1 is not None and r["requests"] else None)
    r["steal_pct"] = (100.0 * (steal1 - steal0) / wall
                      if steal0 is not None and steal1 is not None and wall > 0 else None)
    return r


def count_host_calls(e, cfg, ctx, n=20):
    """Average proxy-wasm host calls and VM callbacks per request, from a trace-level Envoy."""
    import re
    from collections import Counter

    try:
        e.wait_ready()
        port = e.listener_port("bench")
        body = ctx.envoys[cfg.key].body
        # One keep-alive connection, as wrk's: upstream connections are pooled.
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)

        def one():
            conn.request("POST", cfg.path, body=body, headers={"content-type": "application/json"})
            r = conn.getresponse()
            r.read()
            if r.status != 200:
                raise RuntimeError(f"{cfg.key}: status {r.status} while counting host calls")

        one()  # first request: connections, VM warm-up
        mark = e.log_size()
        for _ in range(n):
            one()
        conn.close()
    finally:
        e.stop()  # flushes the log
    text = e.log_since(mark)
    calls = Counter(m.group(1) for m in re.finditer(r"\[vm->host\] (?:env\.)?(\w+)\(", text))
    cbs = Counter(m.group(1) for m in re.finditer(r"\[host->vm\] (\w+)\(", text))
    return {
        "host_calls": round(sum(calls.values()) / n, 1),
        "vm_callbacks": round(sum(cbs.values()) / n, 1),
        "by_name": {k: round(v / n, 1) for k, v in (calls + cbs).most_common()},
        "requests": n,
    }


def rss_kib(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


# ---- machine facts -------------------------------------------------------------

def _envoy_version(text):
    """'envoy  version: <sha>/1.40.0/Clean/RELEASE/BoringSSL' -> '1.40.0 (BoringSSL)'."""
    parts = text.split("version:")[-1].strip().split("/")
    return f"{parts[1]} ({parts[-1]})" if len(parts) >= 3 else text.strip()


def machine(envoy_bin):
    def cmd(*a):
        try:
            return subprocess.run(a, capture_output=True, text=True, timeout=20).stdout.strip()
        except OSError:
            return ""

    model = ""
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = ""
    try:
        mem = open("/proc/meminfo").readline().split(":", 1)[1].strip()
    except OSError:
        pass
    wrk_v = cmd("wrk", "-v").splitlines()
    return {
        "cpu": model,
        "cpus": os.cpu_count(),
        "memory": mem,
        "kernel": platform.release(),
        "envoy": _envoy_version(cmd(envoy_bin, "--version")),
        "wrk": wrk_v[0] if wrk_v else "",
        "rustc": cmd("rustc", "--version"),
        "git": cmd("git", "-C", ROOT, "rev-parse", "--short", "HEAD"),
        "loadavg_start": open("/proc/loadavg").read().split()[:3] if os.path.exists("/proc/loadavg") else [],
    }


# ---- main ----------------------------------------------------------------------

def last_timing(e):
    """The last `dpp_timing` line of a callback-timing build (plugin/src/timing.rs), or None."""
    lines = [ln for ln in e.log_since(0).splitlines() if "dpp_timing {" in ln]
    return json.loads(lines[-1].split("dpp_timing ", 1)[1]) if lines else None


def write_timing(out_dir, configs, timing):
    """timing.json and timing.md: mean µs per call of each span, per configuration."""
    with open(os.path.join(out_dir, "timing.json"), "w") as f:
        json.dump(timing, f, indent=1)
    keys = [c.key for c in configs if timing.get(c.key)]
    spans = []
    for k in keys:
        spans += [s for s in timing[k]["spans"] if s not in spans]
    rows = ["| span | " + " | ".join(f"({k}) µs × calls/stream" for k in keys) + " |",
            "|---|" + "---|" * len(keys)]
    for s in spans:
        cells = []
        for k in keys:
            t = timing[k]
            v = t["spans"].get(s)
            cells.append(f"{v[0]:.2f} × {v[1] / t['streams']:.2f}" if v else "")
        rows.append(f"| {s} | " + " | ".join(cells) + " |")
    with open(os.path.join(out_dir, "timing.md"), "w") as f:
        f.write("In-VM time per span (callback-timing build, last "
                f"{max(timing[k]['streams'] for k in keys)} streams of each configuration; "
                "a span includes the host calls made inside it)\n\n" + "\n".join(rows) + "\n")
    print(open(os.path.join(out_dir, "timing.md")).read())


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--smoke", action="store_true", help="a few seconds per configuration (make bench-smoke)")
    ap.add_argument("--reps", type=int, help="repetitions per configuration (default 5; smoke 1)")
    ap.add_argument("--duration", type=int, help="seconds per wrk run (default 8; smoke 1)")
    ap.add_argument("--warmup", type=int, help="seconds of warm-up per configuration (default 3; smoke 1)")
    ap.add_argument("--connections", type=int, default=16, help="wrk connections of the load profile")
    ap.add_argument("--only", help="comma-separated configuration keys (baselines a,b,c always run)")
    ap.add_argument("--out", help="results directory (default target/bench or target/bench-smoke)")
    ap.add_argument("--envoy", default=os.path.join(ROOT, ".venv", "bin", "envoy"))
    ap.add_argument("--dpp-wasm", help="the dpp-guard module to measure (default: the release build); "
                    "`make bench-timing` passes a callback-timing build and gets timing.md")
    args = ap.parse_args()

    reps = args.reps or (1 if args.smoke else 5)
    seconds = args.duration or (1 if args.smoke else 8)
    warmup = args.warmup if args.warmup is not None else (1 if args.smoke else 3)
    out_dir = args.out or os.path.join(ROOT, "target", "bench-smoke" if args.smoke else "bench")
    os.makedirs(out_dir, exist_ok=True)
    if not shutil.which("wrk"):
        raise SystemExit("wrk not found: run `make bench-setup` (apt-get install wrk)")

    # Load profiles: `load` saturates the proxy (throughput, latency under
    # load); `single` is one connection, the latency a lone client sees.
    profiles = [("load", args.connections), ("single", 1)]
    cpus = cpu_layout()
    configs = C.selected(args.only)
    started = time.time()
    workdir = tempfile.mkdtemp(prefix="dpp-bench-")
    envoys, recorder, upstream = [], None, None
    try:
        ctx = Ctx(workdir, args.dpp_wasm)
        pki = make_pki(workdir)
        recorder = Recorder()
        ctx.recorder = recorder
        upstream = E.Envoy(args.envoy, "upstream", E.upstream_config('{"ok":true}', pki), workdir,
                           concurrency=1, cpus=cpus["upstream"]).wait_ready()
        up_plain, up_tls = upstream.listener_port("up_plain"), upstream.listener_port("up_tls")

        # Start every Envoy under test first (in parallel: V8 start-up is the slow part).
        def start_proxy(cfg, name, log_level=None):
            proxy = E.proxy_config(
                cfg.key, cfg.filters(ctx),
                up_tls if cfg.tls_upstream else up_plain,
                upstream_tls_ca=pki["ca"] if cfg.tls_upstream else None,
                recorder_port=recorder.port,
                upstream_http_filters=cfg.upstream_filters(ctx) if cfg.upstream_filters else None,
                access_log=cfg.access_log(ctx) if cfg.access_log else None,
            )
            env = {**ctx.env, **cfg.env}
            e = E.Envoy(args.envoy, name, proxy, workdir, concurrency=1, cpus=cpus["proxy"], env=env,
                        log_level=log_level)
            envoys.append(e)
            return e

        running = [(cfg, start_proxy(cfg, cfg.key)) for cfg in configs]
        for cfg, e in running:
            e.wait_ready()
            e.port = e.listener_port("bench")
            ctx.envoys[cfg.key] = e
        for cfg, e in running:
            e.body = cfg.body(ctx)
            e.body_file = ctx.body_file(cfg.key, e.body)

        # Check each configuration does its job before measuring it.
        checks = {}
        for cfg, e in running:
            problem = None
            log_mark = e.log_size()
            try:
                recorder.last = None
                status, _ = post(e.port, cfg.path, e.body, {"x-bench-record": "1"})
                if cfg.check:
                    if status != 200 and recorder.last is not None:
                        raise AssertionError(f"status {status}")
                    cfg.check(ctx, e.body, recorder.last)
                status, _ = post(e.port, cfg.path, e.body)
                if status != 200:
                    raise AssertionError(f"status {status} on the benchmark path")
                if cfg.check_live:
                    cfg.check_live(ctx, e)
                # A configuration that works raises no security event on
                # well-formed traffic (refusals the check provokes are expected).
                alarms = [ln for ln in e.log_since(log_mark).splitlines() if "dpp_event" in ln
                          and ('"severity":"critical"' in ln or '"severity":"high"' in ln)
                          and not any(x in ln for x in cfg.expected_events)]
                if alarms:
                    raise AssertionError(f"security event on benchmark traffic: {alarms[0][-200:]}")
            except AssertionError as err:
                problem = str(err) or "check failed"
            checks[cfg.key] = problem
            print(f"check {cfg.key} {cfg.label}: {'ok' if not problem else 'FAILED: ' + problem}", flush=True)
        failed = [k for k, p in checks.items() if p]
        measured = [(cfg, e) for cfg, e in running if not checks[cfg.key]]

        # The upstream alone, to show it is not the bottleneck.
        up_body = ctx.body_file("upstream", ctx.order_body)
        results = {cfg.key: {p: [] for p, _ in profiles} for cfg, _ in measured}
        upstream_direct = []

        for cfg, e in measured:
            run_wrk(e.port, cfg.path, e.body_file, warmup, args.connections, cpus["load"])
        for rep in range(reps):
            # Rotate the start so no configuration always runs first or last.
            order = measured[rep % len(measured):] + measured[:rep % len(measured)]
            for pname, conns in profiles:
                for cfg, e in order:
                    r = measured_run(e, cfg, seconds, conns, cpus)
                    results[cfg.key][pname].append(r)
                    cpu = "" if r["proxy_cpu_us"] is None else f"  proxy CPU {r['proxy_cpu_us']:6.1f} us/req"
                    steal = "" if r["steal_pct"] is None else f"  steal {r['steal_pct']:4.1f}%"
                    print(f"rep {rep + 1}/{reps} {pname:6s} {cfg.key}: {r['rps']:9.0f} req/s  "
                          f"p50 {r['p50_us']:6d} us  p99 {r['p99_us']:6d} us{cpu}{steal}"
                          + (f"  ERRORS {r['errors']}" if r["errors"] else ""), flush=True)
            upstream_direct.append(run_wrk(up_plain, C.ORDERS_PATH, up_body, seconds, args.connections,
                                           cpus["load"]))

        rss = {cfg.key: rss_kib(e.pid()) for cfg, e in measured}
        timing = {cfg.key: last_timing(e) for cfg, e in measured}
        if any(timing.values()):
            write_timing(out_dir, configs, timing)
        # Upstream connection reuse: a proxy that opens a connection per
        # request measures connection set-up, not the filter.
        pooling = {}
        for cfg, e in measured:
            st = e.stats("cluster.upstream.upstream_")
            pooling[cfg.key] = {"connections": st.get("cluster.upstream.upstream_cx_total"),
                                "requests": st.get("cluster.upstream.upstream_rq_total")}

        # Host calls per request, counted from Envoy's wasm trace log: a
        # figure no machine noise can blur, and the usual suspect when a
        # filter that does little costs more than the null filter.
        host_calls = {}
        for cfg, _ in measured:
            host_calls[cfg.key] = count_host_calls(start_proxy(cfg, cfg.key + "-trace", "trace"), cfg, ctx)
        doc = report.build(
            configs=[cfg for cfg, _ in running], results=results, checks=checks, rss=rss, host_calls=host_calls, pooling=pooling,
            upstream_direct=upstream_direct, profiles=profiles, baselines=C.BASELINES,
            settings={
                "reps": reps, "seconds_per_run": seconds, "warmup_seconds": warmup,
                "envoy_concurrency": 1, "wrk_threads": 1, "cpu_pinning": cpus,
                "request_body_bytes": len(ctx.order_body), "smoke": args.smoke,
                "upstream": "Envoy 1.40 direct_response, --concurrency 1",
                "wall_seconds": round(time.time() - started, 1),
            },
            machine=machine(args.envoy),
            date=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        )
        report.write(doc, out_dir)
        print(f"wrote {out_dir}/results.md, results.json, results.png")
        print(open(os.path.join(out_dir, "results.md")).read())
        # Non-2xx answers or broken connections mean a configuration does not
        # work under load; timeouts alone can be a starved machine and are
        # only reported (results.md shows every error count).
        errors = [k for k, v in results.items()
                  if any(r["status_errors"] or r["connect_errors"] or r["read_errors"] or r["write_errors"]
                         for p in v.values() for r in p)]
        if failed:
            print(f"configurations not measured because their check failed: {', '.join(failed)}",
                  file=sys.stderr)
        if errors:
            print(f"configurations with non-2xx answers or socket errors under load: {', '.join(errors)}",
                  file=sys.stderr)
        # One line per run that CI logs can read: each configuration's check is a test.
        print(f"bench: {len(checks) - len(failed)} passed, {len(failed)} failed")
        return 1 if failed or errors else 0
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
