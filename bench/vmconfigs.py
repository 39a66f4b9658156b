"""What bench/vm.py measures: one entry per filter, plus the stage module.

Adding a filter row is one `VmFilter(...)` entry in `FILTERS`.
"""

import json
import os
import secrets
from dataclasses import dataclass
from typing import Callable, Optional

import orders
import pwhost

ORDERS_PATH = "/orders/v0/orders"


class Keys:
    """Fresh key material per run, handed to modules through WASI environ only."""

    wasm_dir = None

    def encrypted(self, body):
        """`body` as dpp_guard's encrypt path sends it on (input of the decrypt rows)."""
        out = through_filter(self.wasm_dir, self, ENCRYPT, body)
        self.plain_of[out] = body
        return out

    def __init__(self):
        self.plain_of = {}
        self.naive = secrets.token_hex(32)
        import base64

        k = base64.urlsafe_b64encode(secrets.token_bytes(32)).rstrip(b"=").decode()
        self.env = [("BENCH_NAIVE_KEY", self.naive), ("DPP_BENCH_KEYS", f"primary=bench1 bench1={k}"),
                    ("DPP_BENCH_LOG_KEY", secrets.token_hex(32))]


def _naive_fields():
    # Bodies are getOrders payloads: payload.Orders[*].<order PII field>.
    return json.dumps({"fields": ["payload.Orders.*." + f for f in orders.ORDER_PII_FIELDS]})


def _same(keys, sent, out):
    assert out == sent, "body changed"


def _same_json(keys, sent, out):
    assert json.loads(out) == json.loads(sent), "JSON changed"


def _encrypted(keys, sent, out):
    values = set()

    def walk(v):
        if isinstance(v, str):
            values.add(v)
        elif isinstance(v, list):
            for x in v:
                walk(x)
        elif isinstance(v, dict):
            for x in v.values():
                walk(x)

    walk(json.loads(out))
    leaked = [v for v in orders.pii_values(json.loads(sent)) if v in values]
    assert not leaked, f"{len(leaked)} PII values left in clear"


@dataclass
class VmFilter:
    key: str
    label: str
    wasm: str
    root_id: str = ""
    configuration: Callable = lambda keys: ""
    body: Callable = lambda keys, body: body
    check: Optional[Callable] = None


UNPROTECTED = json.dumps({"version": 1, "routes": [
    {"name": "catalog", "match": {"path": {"prefix": "/catalog/"}}}]})

# Protected routes in the VM: the same rules as the Envoy benchmark's (f)
# and (g), with room for a 1 MiB body once it carries envelopes.
_PROTECTED_COMMON = {
    "version": 1,
    "keys": {"env": "DPP_BENCH_KEYS"},
    "transport": {"downstream": {"trusted_tls_terminator": True}},
}
ENCRYPT = json.dumps({**_PROTECTED_COMMON, "routes": [{
    "name": "orders", "match": {"path": {"prefix": "/orders/"}}, "body": {"max_bytes": 4 * 1024 * 1024},
    "encrypt": [{"direction": "request", "preset": "sp-api-orders"}]}]})
DECRYPT = json.dumps({**_PROTECTED_COMMON, "routes": [{
    "name": "orders", "match": {"path": {"prefix": "/orders/"}}, "body": {"max_bytes": 4 * 1024 * 1024},
    "decrypt": [{"direction": "request", "preset": "sp-api-orders"}]}]})
HEADERS = [(":method", "POST"), (":path", ORDERS_PATH), (":authority", "sellers.example"),
           ("content-type", "application/json"), ("content-length", "0")]


def through_filter(wasm_dir, keys, policy, body):
    """What dpp_guard makes of `body` under `policy` (one request in the VM)."""
    host = pwhost.Host(os.path.join(wasm_dir, "dpp_guard.wasm"), env=keys.env)
    if not host.start("dpp_guard", policy.encode()):
        raise SystemExit(f"dpp_guard refused the policy: {host.logs[-3:]}")
    hd = [(k, str(len(body)) if k == "content-length" else v) for k, v in HEADERS]
    out, _ = host.request(hd, body)
    if host.local_reply:
        raise SystemExit(f"dpp_guard refused the body: {host.local_reply}")
    return out


def _decrypted(keys, sent, out):
    assert json.loads(out) == json.loads(keys.plain_of[sent]), "decrypt did not give the original back"


FILTERS = [
    VmFilter("null", "null filter (host overhead)", "bench_null_filter.wasm", check=_same),
    VmFilter("floor", "serde_json parse + serialize (floor)", "bench_naive_json_filter.wasm", check=_same_json),
    VmFilter("naive-crypto", "naive: floor + GCM-SIV per field", "bench_naive_crypto_filter.wasm",
             configuration=lambda k: _naive_fields(), check=_encrypted),
    VmFilter("dpp-unprot", "dpp-guard, unprotected route", "dpp_guard.wasm", root_id="dpp_guard",
             configuration=lambda k: UNPROTECTED, check=_same),
    VmFilter("dpp-encrypt", "dpp-guard, encrypt preset PII fields", "dpp_guard.wasm", root_id="dpp_guard",
             configuration=lambda k: ENCRYPT, check=_encrypted),
    VmFilter("dpp-decrypt", "dpp-guard, decrypt path", "dpp_guard.wasm", root_id="dpp_guard",
             configuration=lambda k: DECRYPT, body=lambda k, b: k.encrypted(b), check=_decrypted),
]


@dataclass
class Stage:
    id: int  # the stage number in bench/vm/src/lib.rs
    key: str
    label: str
    # (keys, body) -> the bytes this stage works on
    body: Callable = lambda keys, body: body


STAGES = [
    Stage(0, "floor", "serde_json parse + serialize (floor)"),
    Stage(1, "parse", "parse: validating scan (json::validate)"),
    Stage(2, "select", "parse + select + splice copy, no crypto"),
    Stage(3, "seal", "encrypt: seal the selected values only"),
    Stage(4, "encrypt", "whole encrypt rewrite (protect::rewrite)"),
    Stage(5, "open", "decrypt: open the envelopes only"),
    Stage(6, "decrypt", "whole decrypt rewrite (protect::rewrite)"),
    Stage(13, "encrypt-obj", "whole encrypt rewrite, granularity object (one envelope per PII object)"),
    Stage(14, "decrypt-obj", "whole decrypt rewrite, granularity object"),
    Stage(7, "naive", "naive (d): serde_json + new cipher per field"),
    # Per request, whatever the body (the same figure in every column).
    Stage(11, "scrub", "scrub: PII path, user-agent, client address (per request)"),
    Stage(12, "record", "record: build + scrub + seal one access record (per request)"),
    # Primitives: the same per call whatever the body (shown once per size).
    Stage(8, "prim-seal", "primitive: one GCM-SIV seal of 24 bytes, ready cipher"),
    Stage(9, "prim-nonce", "primitive: one 12-byte random nonce (WASI random_get)"),
    Stage(10, "prim-keysetup", "primitive: one AES-256-GCM-SIV key setup"),
]


def stages(wasm_dir, keys, bodies, smoke=False):
    """Per-stage medians, timed inside the VM by the bench-vm module."""
    import statistics

    import wasmtime

    engine = wasmtime.Engine()
    module = wasmtime.Module.from_file(engine, os.path.join(wasm_dir, "bench_vm.wasm"))
    store = wasmtime.Store(engine)
    wasi = wasmtime.WasiConfig()
    wasi.env = keys.env
    store.set_wasi(wasi)
    linker = wasmtime.Linker(engine)
    linker.define_wasi()
    ex = linker.instantiate(store, module).exports(store)
    if "_initialize" in ex:
        ex["_initialize"](store)
    memory = ex["memory"]
    target_ns = 20e6 if smoke else 200e6
    rounds = 1 if smoke else 7
    out = []
    for st in STAGES:
        row = {"key": st.key, "label": st.label, "sizes": {}}
        for label, body in bodies.items():
            data = st.body(keys, body)
            ptr = ex["bench_body"](store, len(data))
            memory.write(store, data, ptr)
            if ex["bench_prepare"](store) != 0:
                raise SystemExit(f"bench-vm: bench_prepare failed at {label}")
            one = ex["bench_stage"](store, st.id, 1)
            if one == 2**64 - 1:
                raise SystemExit(f"stage {st.key} failed at {label}")
            iters = max(1, int(target_ns / max(one, 1) / rounds))
            per = []
            for _ in range(rounds):
                ns = ex["bench_stage"](store, st.id, iters)
                if ns == 2**64 - 1:
                    raise SystemExit(f"stage {st.key} failed at {label}")
                per.append(ns / iters)
            med = statistics.median(per)
            row["sizes"][label] = {"body_bytes": len(data), "median_us": round(med / 1e3, 2),
                                   "mib_per_s": round(len(data) / (med / 1e9) / (1024 * 1024), 1),
                                   "iterations": iters * rounds}
            print(f"stage {st.key:10s} {label:8s} {med / 1e3:10.2f} us", flush=True)
        out.append(row)
    _native(wasm_dir, keys, bodies, out, smoke)
    return out


def _native(wasm_dir, keys, bodies, rows, smoke):
    """The same stages natively (bench/vm/src/bin/native.rs), beside the VM figures."""
    import subprocess
    import tempfile

    exe = os.path.join(os.path.dirname(os.path.dirname(wasm_dir)), "release", "native")
    if not os.path.exists(exe):
        raise SystemExit(f"missing {exe}: run `make bench-build`")
    with tempfile.TemporaryDirectory() as d:
        files = {}
        for label, body in bodies.items():
            path = os.path.join(d, label.replace(" ", "") + ".json")
            with open(path, "wb") as f:
                f.write(body)
            files[path] = label
        env = {**os.environ, **dict(keys.env), "BENCH_NATIVE_BUDGET_MS": "20" if smoke else "200"}
        res = subprocess.run([exe, *files], capture_output=True, text=True, env=env, timeout=1200)
        if res.returncode != 0:
            raise SystemExit(f"native stages failed: {res.stderr.strip()}")
    by_id = {st.id: row for st, row in zip(STAGES, rows)}
    for line in res.stdout.splitlines():
        r = json.loads(line)
        row = by_id.get(r["stage"])
        if row is not None:
            row["sizes"][files[r["file"]]]["native_us"] = round(r["median_ns"] / 1e3, 2)


def memory(wasm_dir, keys, body_1mib, headers):
    """dpp_guard linear memory after start and after one 1 MiB protected body, each direction."""
    out = {}
    for name, policy, body in (("encrypt", ENCRYPT, body_1mib), ("decrypt", DECRYPT, None)):
        if body is None:
            body = keys.encrypted(body_1mib)
        host = pwhost.Host(os.path.join(wasm_dir, "dpp_guard.wasm"), env=keys.env)
        initial = host.memory_bytes()
        if not host.start("dpp_guard", policy.encode()):
            raise SystemExit(f"dpp_guard refused the {name} policy: {host.logs[-3:]}")
        after_start = host.memory_bytes()
        hd = [(k, str(len(body)) if k == "content-length" else v) for k, v in headers]
        host.request(hd, body)
        if host.local_reply:
            raise SystemExit(f"dpp_guard refused the 1 MiB {name} body: {host.local_reply}")
        out[f"{name}: initial (module's declared minimum)"] = initial
        out[f"{name}: after start (on_configure done)"] = after_start
        out[f"{name}: after one {len(body):,}-byte request body (peak)"] = host.memory_bytes()
    return out
