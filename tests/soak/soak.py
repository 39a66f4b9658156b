#!/usr/bin/env python3
"""`make soak`: a long run of mixed traffic through two Envoys with field
encryption, watching errors, latency and memory (docs/reliability.md).

    client (wrk, TLS) -> Envoy A (encrypts request PII, decrypts response PII)
                      -> Envoy B (decrypts request PII, encrypts response PII)
                      -> service (an Envoy answering itself over TLS, which
                         refuses any request body that still holds an
                         envelope or lacks the plaintext e-mail)

A and B run the shipped bootstrap envoy/dpp-guard-fields.yaml with the
shipped hop policies (envoy/hop-*.ecds.yaml); B, which denies requests no
route matches, gets one more route without field rules for the
unprotected part of the mix. First the capacity of the
chain is measured (wrk unpaced, the same mix); then the soak runs at
`--load` (default 80 %) of it in slices of `--sample` seconds, each a wrk
run paced per connection. After every slice it samples, per Envoy: the
process RSS, Envoy's heap (/memory), and the linear memory of each Wasm VM
(the read-write mapping in front of each V8 Wasm memory reservation in
/proc/PID/smaps: Envoy's /stats has no per-VM memory). At the end:
errors, p99 over time, memory growth after warm-up, a chart
(<out>/soak.png), samples (<out>/samples.jsonl), a summary
(<out>/summary.json, <out>/summary.md). Exit status 1 when the run had an
unexpected error, a VM was re-created, or memory grew by 5 % or more after
warm-up.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from support.envoy import Envoy  # noqa: E402
from support.paths import ENVOY_DIR, ROOT  # noqa: E402
from support.pki import TestPki  # noqa: E402
from support.sp_api import OPERATIONS  # noqa: E402
from support.stack import GuardStack  # noqa: E402
from support.twohop import BOOTSTRAP, HOP_A, HOP_B, keygen  # noqa: E402

LUA = HERE / "soak.lua"
DOC = OPERATIONS["getOrderBuyerInfo"][1]
EMAIL = DOC["payload"]["BuyerEmail"]
CONNECTIONS = 16
GROWTH_LIMIT = 0.05


class Service:
    """The service behind Envoy B: an Envoy answering every request itself
    (direct_response, far cheaper than any proxy under test), over TLS. A
    Lua filter refuses (500) a request body that still holds an envelope or
    lost the buyer's e-mail: B's decryption is checked on every request."""

    def __init__(self, pki: TestPki, workdir: Path):
        leaf = pki.leaf("soak-service")
        order = json.dumps(DOC)
        lua = f"""
function envoy_on_request(handle)
  if handle:headers():get(":method") == "POST" then
    local body = handle:body()
    local text = body and body:getBytes(0, body:length()) or ""
    if text:find("dpg1.", 1, true) or not text:find("{EMAIL}", 1, true) then
      handle:respond({{[":status"] = "500"}}, "request body not decrypted")
    end
  end
end
"""
        routes = [
            {"match": {"prefix": "/orders/"},
             "direct_response": {"status": 200, "body": {"inline_string": order}},
             "response_headers_to_add": [{"header": {"key": "content-type", "value": "application/json"}}]},
            {"match": {"prefix": "/"},
             "direct_response": {"status": 200, "body": {"inline_string": '{"status":"ok"}'}},
             "response_headers_to_add": [{"header": {"key": "content-type", "value": "application/json"}}]},
        ]
        config = {
            "node": {"id": "soak-service", "cluster": "soak"},
            "admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": 0}}},
            "static_resources": {"listeners": [{
                "name": "service",
                "address": {"socket_address": {"address": "127.0.0.1", "port_value": 0}},
                "filter_chains": [{
                    "transport_socket": {"name": "envoy.transport_sockets.tls", "typed_config": {
                        "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext",
                        "common_tls_context": {"tls_certificates": [{
                            "certificate_chain": {"filename": str(leaf.cert)},
                            "private_key": {"filename": str(leaf.key)}}]}}},
                    "filters": [{"name": "envoy.filters.network.http_connection_manager", "typed_config": {
                        "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
                        "stat_prefix": "service",
                        "route_config": {"virtual_hosts": [{"name": "all", "domains": ["*"], "routes": routes}]},
                        "http_filters": [
                            {"name": "check", "typed_config": {
                                "@type": "type.googleapis.com/envoy.extensions.filters.http.lua.v3.Lua",
                                "default_source_code": {"inline_string": lua}}},
                            {"name": "envoy.filters.http.router", "typed_config": {
                                "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"}}]}}]}]}]},
        }
        self.envoy = Envoy(json.dumps(config), workdir, name="service", log_level="warning")
        self.port = 0

    def start(self) -> "Service":
        self.envoy.start()
        self.port = self.envoy.listener_port("service")
        return self

    def stop(self) -> None:
        self.envoy.stop()

    def self_test(self, ca: Path) -> None:
        """The check can fail: an envelope is refused, the plaintext passes."""
        from support import client

        bad = json.dumps({"payload": {"BuyerEmail": "dpg1.k1.AAAA"}})
        good = json.dumps(DOC)
        for body, want in ((bad, 500), (good, 200)):
            r = client.request(self.port, "POST", "/orders/x", ca=ca, body=body,
                               headers={"content-type": "application/json"})
            if r.status != want:
                raise SystemExit(f"the service's decryption check answered {r.status} instead of {want}")


def hop(pki: TestPki, workdir: Path, name: str, ecds: Path, keys: str, service_port: int) -> GuardStack:
    policy = json.loads((ENVOY_DIR / "policies" / f"{name}.json").read_text())
    if policy.get("requests", {}).get("unmatched") == "deny":
        # Hop B serves only the routes its policy lists: the unprotected
        # part of the mix (no route at A) passes B under a route without
        # field rules.
        policy["routes"].append({"name": "public", "match": {"path": {"prefix": "/public/"}}})
    stack = GuardStack(pki, workdir=workdir / name, policy=policy, ecds=ecds, bootstrap=BOOTSTRAP,
                       env={"DPP_GUARD_KEYS": keys})
    # No recording service: the next hop is given by port. Access records
    # are built and sealed as usual but written to /dev/null (a 30-minute
    # run would fill the disk).
    stack.service.stop = lambda: None
    stack.service.start = lambda: None
    stack.service.port = service_port
    base_values = stack.values
    stack.values = lambda: {**base_values(), "ACCESS_LOG": "/dev/null"}
    return stack.start()


# ---- measuring -------------------------------------------------------------------

def wrk(port: int, seconds: int, delay_ms: float, body_file: Path) -> dict:
    cmd = ["wrk", "-t1", f"-c{CONNECTIONS}", f"-d{seconds}s", "--latency", "-s", str(LUA),
           f"https://127.0.0.1:{port}"]
    env = {**os.environ, "SOAK_BODY": str(body_file), "SOAK_EMAIL": EMAIL, "SOAK_DELAY_MS": f"{delay_ms:.3f}"}
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 60, env=env)
    for line in out.stdout.splitlines():
        if line.startswith("SOAK_RESULT "):
            r = json.loads(line[len("SOAK_RESULT "):])
            r["rps"] = r["requests"] / (r["duration_us"] / 1e6) if r["duration_us"] else 0.0
            r["errors"] = sum(r[k] for k in ("connect_errors", "read_errors", "write_errors",
                                             "status_errors", "timeouts", "wrong_bodies"))
            return r
    raise RuntimeError(f"wrk gave no result (rc={out.returncode}): {out.stderr.strip()[:500]}")


def vm_memories(pid: int) -> list[dict]:
    """Each V8 Wasm memory: the read-write mapping directly in front of a
    PROT_NONE reservation of 4 GiB or more (V8's guard region). Size is
    the module's linear memory (it never shrinks), rss what is resident."""
    vmas = []
    try:
        with open(f"/proc/{pid}/smaps") as f:
            for line in f:
                parts = line.split()
                if len(parts) >= 5 and "-" in parts[0] and ":" not in parts[0]:
                    a, b = (int(x, 16) for x in parts[0].split("-"))
                    vmas.append({"a": a, "b": b, "perms": parts[1], "rss_kib": 0})
                elif parts[:1] == ["Rss:"] and vmas:
                    vmas[-1]["rss_kib"] = int(parts[1])
    except OSError:
        return []
    vmas.sort(key=lambda v: v["a"])
    out = []
    for prev, v in zip(vmas, vmas[1:]):
        if v["perms"] == "---p" and v["b"] - v["a"] >= 4 << 30 and prev["b"] == v["a"] and prev["perms"] == "rw-p":
            out.append({"size_kib": (prev["b"] - prev["a"]) >> 10, "rss_kib": prev["rss_kib"]})
    return out


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def sample_envoy(e: Envoy) -> dict:
    mem = json.loads(e.admin_get("/memory"))
    stats = e.stats()
    vms = vm_memories(e.proc.pid)
    return {
        "rss_kib": rss_kib(e.proc.pid),
        "heap_allocated_kib": int(mem["allocated"]) >> 10,
        "heap_size_kib": int(mem["heap_size"]) >> 10,
        "vms": vms,
        "vm_linear_kib": sum(v["size_kib"] for v in vms),
        "vm_resident_kib": sum(v["rss_kib"] for v in vms),
        "vms_created": stats.get("wasm.envoy.wasm.runtime.v8.created", 0),
        "vms_active": stats.get("wasm.envoy.wasm.runtime.v8.active", 0),
        "refusal_events": sum(v for k, v in stats.items() if k.startswith("wasmcustom.dpp_guard.events.")
                              and not k.endswith((".policy_loaded", ".log_key_unavailable"))),
    }


# ---- report ----------------------------------------------------------------------

def growth(samples: list[dict], key: str, envoy: str, warmup_s: float) -> dict:
    after = [s for s in samples if s["t"] >= warmup_s]
    if len(after) < 2:
        after = samples  # a run too short for a warm-up: all of it
    first, last = after[0]["envoys"][envoy][key], after[-1]["envoys"][envoy][key]
    # The largest value after warm-up against the first: a slow leak shows
    # as a rising maximum even when the last sample happens to be low.
    peak = max(s["envoys"][envoy][key] for s in after)
    return {"from_kib": first, "to_kib": last, "peak_kib": peak,
            "growth": (peak - first) / first if first else None}


def chart(samples: list[dict], out: Path, target_rps: float) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    t = [s["t"] / 60 for s in samples]
    fig, axes = plt.subplots(4, 1, figsize=(9, 11), sharex=True)
    ax = axes[0]
    ax.plot(t, [s["load"]["rps"] for s in samples], label="requests/s")
    ax.axhline(target_rps, color="grey", linestyle=":", label="target")
    ax.set_ylim(bottom=0)
    ax.set_ylabel("requests/s")
    errors = [s["load"]["errors"] for s in samples]
    ax.set_title("dpp-guard soak: client -> Envoy A (encrypt) -> Envoy B (decrypt) -> service\n"
                 f"{sum(errors)} errors in {sum(s['load']['requests'] for s in samples)} requests")
    if any(errors):
        ax2 = ax.twinx()
        ax2.bar(t, errors, width=0.1, color="red", label="errors")
        ax2.set_ylabel("errors per slice")
    ax.legend(loc="lower left")
    ax = axes[1]
    ax.plot(t, [s["load"]["p50_us"] / 1000 for s in samples], label="p50")
    ax.plot(t, [s["load"]["p99_us"] / 1000 for s in samples], label="p99")
    ax.set_ylim(bottom=0)
    ax.set_ylabel("latency (ms)")
    ax.legend(loc="lower left")
    ax = axes[2]
    for name in samples[0]["envoys"]:
        ax.plot(t, [s["envoys"][name]["rss_kib"] / 1024 for s in samples], label=f"Envoy {name} RSS")
        ax.plot(t, [s["envoys"][name]["heap_allocated_kib"] / 1024 for s in samples], linestyle="--",
                label=f"Envoy {name} heap allocated")
    ax.set_ylim(bottom=0)
    ax.set_ylabel("MiB")
    ax.legend(loc="lower left", fontsize="small")
    ax = axes[3]
    for name in samples[0]["envoys"]:
        n_vms = max(len(s["envoys"][name]["vms"]) for s in samples)
        for i in range(n_vms):
            ax.plot(t, [s["envoys"][name]["vms"][i]["size_kib"] / 1024 if i < len(s["envoys"][name]["vms"])
                        else float("nan") for s in samples], label=f"Envoy {name} VM {i + 1}")
    ax.set_ylim(bottom=0)
    ax.set_ylabel("Wasm linear memory (MiB)")
    ax.set_xlabel("minutes")
    ax.legend(loc="lower left", fontsize="x-small", ncol=2)
    fig.tight_layout()
    fig.savefig(out, dpi=110)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seconds", type=int, default=int(os.environ.get("SOAK_SECONDS", 1800)))
    p.add_argument("--load", type=float, default=0.8, help="fraction of the measured capacity")
    p.add_argument("--sample", type=int, default=10, help="seconds per slice / memory sample")
    p.add_argument("--capacity-seconds", type=int, default=15)
    p.add_argument("--out", type=Path, default=ROOT / "target" / "soak")
    args = p.parse_args()
    if not shutil.which("wrk"):
        raise SystemExit("wrk is not installed: run `make bench-setup`")
    args.out.mkdir(parents=True, exist_ok=True)
    workdir = Path(tempfile.mkdtemp(prefix="dpp-soak-"))
    pki = TestPki(workdir / "pki")
    keys = keygen("k1")
    body_file = workdir / "body.json"
    body_file.write_bytes(json.dumps(DOC).encode())
    started = []
    try:
        service = Service(pki, workdir).start()
        started.append(service)
        service.self_test(pki.ca_cert)
        b = hop(pki, workdir, "hop-b-decrypt", HOP_B, keys, service.port)
        started.append(b)
        a = hop(pki, workdir, "hop-a-encrypt", HOP_A, keys, b.port)
        started.append(a)
        envoys = {"A": a.envoy, "B": b.envoy}

        print(f"measuring capacity: {args.capacity_seconds}s unpaced, {CONNECTIONS} connections", flush=True)
        wrk(a.port, 3, 0, body_file)  # warm-up: connections, VMs, caches
        cap = wrk(a.port, args.capacity_seconds, 0, body_file)
        if cap["errors"]:
            raise SystemExit(f"errors while measuring capacity: {cap}")
        target = args.load * cap["rps"]
        # Per-connection pacing: each connection sends one request every
        # CONNECTIONS/target seconds; the wait is corrected after each
        # slice by the rate actually reached.
        delay_ms = max(0.0, CONNECTIONS / target * 1000 - cap["p50_us"] / 1000)
        print(f"capacity {cap['rps']:.0f} req/s (p99 {cap['p99_us'] / 1000:.1f} ms); "
              f"soak at {target:.0f} req/s for {args.seconds}s", flush=True)

        samples = []
        baseline = {n: sample_envoy(e) for n, e in envoys.items()}
        t0 = time.monotonic()
        with open(args.out / "samples.jsonl", "w") as log:
            while time.monotonic() - t0 < args.seconds:
                load = wrk(a.port, args.sample, delay_ms, body_file)
                if load["rps"] > 0:
                    # rps ~ CONNECTIONS / (delay + latency): scale the cycle.
                    latency_ms = load["p50_us"] / 1000
                    delay_ms = max(0.0, (delay_ms + latency_ms) * load["rps"] / target - latency_ms)
                s = {"t": round(time.monotonic() - t0, 1), "load": load,
                     "envoys": {n: sample_envoy(e) for n, e in envoys.items()}}
                samples.append(s)
                log.write(json.dumps(s) + "\n")
                log.flush()
                print(f"{s['t']:7.0f}s {load['rps']:6.0f} req/s  p99 {load['p99_us'] / 1000:6.1f} ms  "
                      f"errors {load['errors']}  " + "  ".join(
                          f"{n}: rss {v['rss_kib'] / 1024:.1f} MiB vm {v['vm_linear_kib'] / 1024:.2f} MiB"
                          for n, v in s["envoys"].items()), flush=True)
                for n, e in envoys.items():
                    if e.proc.poll() is not None:
                        raise SystemExit(f"Envoy {n} exited: {e.log_tail()}")

        duration = samples[-1]["t"] if samples else 0
        # Warm-up: the first third of the run, at most the first 10 minutes
        # (the acceptance figure is the growth over the last 20 of 30).
        warmup = min(duration / 3, 600)
        errors = sum(s["load"]["errors"] for s in samples)
        requests = sum(s["load"]["requests"] for s in samples)
        summary = {
            "seconds": duration, "capacity_rps": cap["rps"], "target_rps": target,
            "requests": requests, "errors": errors,
            "mean_rps": requests / duration if duration else 0,
            "p99_ms": {"first": samples[0]["load"]["p99_us"] / 1000, "last": samples[-1]["load"]["p99_us"] / 1000,
                       "max": max(s["load"]["p99_us"] for s in samples) / 1000,
                       "median": sorted(s["load"]["p99_us"] for s in samples)[len(samples) // 2] / 1000},
            "warmup_s": warmup,
            "memory": {n: {"rss": growth(samples, "rss_kib", n, warmup),
                           "vm_linear": growth(samples, "vm_linear_kib", n, warmup),
                           "heap_allocated": growth(samples, "heap_allocated_kib", n, warmup),
                           "vms": len(samples[-1]["envoys"][n]["vms"])}
                       for n in envoys},
            "vms_recreated": {n: samples[-1]["envoys"][n]["vms_created"] - baseline[n]["vms_created"]
                              for n in envoys},
            "refusal_events": {n: samples[-1]["envoys"][n]["refusal_events"] - baseline[n]["refusal_events"]
                               for n in envoys},
        }
        ok = (errors == 0 and all(v == 0 for v in summary["vms_recreated"].values())
              and all(v == 0 for v in summary["refusal_events"].values())
              and all((m["rss"]["growth"] or 0) < GROWTH_LIMIT and (m["vm_linear"]["growth"] or 0) < GROWTH_LIMIT
                      for m in summary["memory"].values()))
        summary["passed"] = ok
        (args.out / "summary.json").write_text(json.dumps(summary, indent=2))
        chart(samples, args.out / "soak.png", target)
        lines = [f"soak: {duration / 60:.1f} min at {summary['mean_rps']:.0f} req/s "
                 f"(target {target:.0f}, capacity {cap['rps']:.0f}), {requests} requests, {errors} errors",
                 f"p99 per {args.sample}s slice: first {summary['p99_ms']['first']:.1f} ms, "
                 f"median {summary['p99_ms']['median']:.1f} ms, max {summary['p99_ms']['max']:.1f} ms, "
                 f"last {summary['p99_ms']['last']:.1f} ms"]
        for n, m in summary["memory"].items():
            lines.append(
                f"Envoy {n}: RSS {m['rss']['from_kib'] / 1024:.1f} -> {m['rss']['to_kib'] / 1024:.1f} MiB "
                f"(peak growth {100 * (m['rss']['growth'] or 0):+.1f} % after {warmup / 60:.1f} min warm-up); "
                f"{m['vms']} Wasm VMs, linear memory {m['vm_linear']['from_kib'] / 1024:.2f} -> "
                f"{m['vm_linear']['to_kib'] / 1024:.2f} MiB ({100 * (m['vm_linear']['growth'] or 0):+.1f} %); "
                f"VMs re-created {summary['vms_recreated'][n]}, refusal events {summary['refusal_events'][n]}")
        lines.append("PASSED" if ok else "FAILED")
        (args.out / "summary.md").write_text("\n\n".join(lines) + "\n")
        print("\n".join(lines))
        print(f"chart: {args.out / 'soak.png'}")
        return 0 if ok else 1
    finally:
        for s in reversed(started):
            s.stop()
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
