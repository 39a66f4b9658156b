"""The benchmark table: one entry per configuration.

Adding a configuration is one `Config(...)` entry in `CONFIGS`: how the Envoy
under test is set up (`filters`, `upstream_filters`, `tls_upstream`,
`access_log`), what request wrk sends (`path`, `body`), and how the runner
checks, before measuring, that the configuration really does its job
(`check`, given what the recording upstream received). A configuration
whose check fails is not measured: no number is better than a wrong one.
"""

import json
import os
from dataclasses import dataclass, field
from typing import Callable, Optional

import envoy as E
import orders

# Request paths. The dpp-guard policy protects /orders/; the unprotected
# configuration sends the same body to a path no policy route covers.
ORDERS_PATH = "/orders/v0/orders/902-3159896-1390916"
UNPROTECTED_PATH = "/catalog/2022-04-01/items"

# The naive encryptor selects the same fields as dpp-guard's preset, so (d)
# and (f) do the same amount of cryptography.
NAIVE_FIELDS = ["payload." + f for f in orders.ORDER_PII_FIELDS]


@dataclass
class Config:
    key: str
    label: str
    # ctx -> list of http_filters entries placed before the router
    filters: Callable = lambda ctx: []
    # ctx -> list of router upstream_http_filters (upstream_codec is appended)
    upstream_filters: Optional[Callable] = None
    tls_upstream: bool = False
    path: str = ORDERS_PATH
    # ctx -> bytes of the request body
    body: Callable = lambda ctx: ctx.order_body
    # ctx -> access_log list for the HTTP connection manager
    access_log: Optional[Callable] = None
    # (ctx, sent_body, recorded) -> None, raises AssertionError when the
    # configuration does not do what its label says. `recorded` is None when
    # the recorder got nothing (e.g. the request was refused).
    check: Optional[Callable] = None
    # wire a check that needs the real (TLS) upstream instead of the recorder
    check_live: Optional[Callable] = None
    env: dict = field(default_factory=dict)
    # security events the check provokes on purpose (substrings of the log line)
    expected_events: tuple = ()


def _null(ctx):
    return [E.wasm_filter("null", ctx.wasm["null"], "", "")]


def _naive_json(ctx):
    return [E.wasm_filter("naive_json", ctx.wasm["naive_json"], "", "")]


def _naive_crypto(ctx):
    conf = json.dumps({"fields": NAIVE_FIELDS})
    return [E.wasm_filter("naive_crypto", ctx.wasm["naive_crypto"], "", conf, env_keys=["BENCH_NAIVE_KEY"])]


def _dpp(policy):
    def make(ctx):
        return [
            E.wasm_filter("dpp_guard", ctx.wasm["dpp_guard"], "dpp_guard", json.dumps(policy),
                          env_keys=ctx.dpp_env_keys)
        ]

    return make


# The benchmark's upstreams are plaintext on loopback (the TLS cost belongs
# to Envoy, not to dpp-guard): exempt them, as docs/policy.md `transport`
# says an operator does for a cluster on a protected link. Without this the
# plaintext watch would rightly log a critical event on every request.
LOOPBACK_EXEMPT = {
    "upstream": {"exempt": {"reason": "benchmark: loopback upstream"}},
    "recorder": {"exempt": {"reason": "benchmark: loopback recorder for checks"}},
}

# Protected routes: wrk speaks plaintext HTTP to Envoy, so the listener is
# declared to sit behind a TLS terminator (docs/policy.md
# `transport.downstream.trusted_tls_terminator`); the TLS cost of a real
# client hop is Envoy's, the same with or without dpp-guard.
PROTECTED_TRANSPORT = {
    "upstream": {"clusters": LOOPBACK_EXEMPT},
    "downstream": {"trusted_tls_terminator": True},
}


def keyring_text(raw32):
    """dpp-guard keyring text (docs/policy.md `keys`): one key, primary."""
    import base64

    k = base64.urlsafe_b64encode(raw32).rstrip(b"=").decode()
    return f"primary=bench1 bench1={k}"


# The encrypt path: every sp-api-orders preset field of the request body.
ENCRYPT_POLICY = {
    "version": 1,
    "keys": {"env": "DPP_BENCH_KEYS"},
    "routes": [{
        "name": "orders",
        "match": {"path": {"prefix": "/orders/"}},
        "encrypt": [{"direction": "request", "preset": "sp-api-orders"}],
    }],
    "transport": PROTECTED_TRANSPORT,
}

# The decrypt path: the same fields, opened for an entitled upstream.
DECRYPT_POLICY = {
    "version": 1,
    "keys": {"env": "DPP_BENCH_KEYS"},
    "routes": [{
        "name": "orders",
        "match": {"path": {"prefix": "/orders/"}},
        "decrypt": [{"direction": "request", "preset": "sp-api-orders"}],
    }],
    "transport": PROTECTED_TRANSPORT,
}

# The same with `granularity: object` (docs/envelope.md): each PII object of
# the preset (BuyerInfo, ShippingAddress) sealed as one envelope.
ENCRYPT_OBJECTS_POLICY = json.loads(json.dumps(ENCRYPT_POLICY))
ENCRYPT_OBJECTS_POLICY["routes"][0]["encrypt"][0]["granularity"] = "object"
DECRYPT_OBJECTS_POLICY = json.loads(json.dumps(DECRYPT_POLICY))
DECRYPT_OBJECTS_POLICY["routes"][0]["decrypt"][0]["granularity"] = "object"

# A policy that protects /orders/ but not the path the request goes to.
UNPROTECTED_POLICY = {
    "version": 1,
    "routes": [{"name": "orders", "match": {"path": {"prefix": "/orders/"}}, "no_store": True}],
    "transport": {"upstream": {"clusters": LOOPBACK_EXEMPT}},
    # (e) measures the filter on traffic it does not protect; the access
    # record for every request is row (i).
    "logging": {"access_records": "protected"},
}


# ---- checks -----------------------------------------------------------------

def same_bytes(ctx, sent, rec):
    assert rec is not None, "upstream received nothing"
    assert rec["body"] == sent, "upstream body differs from what was sent"


def same_json(ctx, sent, rec):
    assert rec is not None, "upstream received nothing"
    assert json.loads(rec["body"]) == json.loads(sent), "upstream JSON differs from what was sent"


def _strings(v, out):
    if isinstance(v, str):
        out.add(v)
    elif isinstance(v, list):
        for x in v:
            _strings(x, out)
    elif isinstance(v, dict):
        for x in v.values():
            _strings(x, out)
    return out


def pii_encrypted(ctx, sent, rec):
    """No PII value reaches the upstream as a JSON string; the rest is intact."""
    assert rec is not None, "upstream received nothing"
    doc, out = json.loads(sent), json.loads(rec["body"])
    values = _strings(out, set())
    leaked = [v for v in orders.pii_values(doc) if v in values]
    assert not leaked, f"{len(leaked)} PII values reached the upstream in clear, e.g. {leaked[:2]}"
    assert out["payload"]["AmazonOrderId"] == doc["payload"]["AmazonOrderId"], "non-PII field changed"
    assert out["payload"]["OrderItems"] == doc["payload"]["OrderItems"], "non-PII field changed"


# The upstream TLS guard alone: every upstream must speak TLS 1.2 or later.
GUARD_POLICY = {"version": 1, "transport": {"upstream": {"min_tls_version": "TLSv1.2"}}}


def _upstream_guard(ctx):
    return [E.wasm_filter("dpp_upstream_guard", ctx.wasm["dpp_guard"], "dpp_upstream_guard",
                          json.dumps(GUARD_POLICY), vm_id="dpp_guard")]


# Access records on: the unprotected policy plus a `logging` section with a
# log key (records pseudonymized and sealed), a scrubbed header, and Envoy's
# file access logger printing the record (docs/policy.md `logging`).
RECORDS_POLICY = {
    **UNPROTECTED_POLICY,
    "logging": {"log_key_env": "DPP_BENCH_LOG_KEY", "require_log_key": True,
                "request_headers": ["user-agent"], "access_records": "all"},
}


def _access_log(ctx):
    return [{
        "name": "envoy.access_loggers.file",
        "typed_config": {
            "@type": E.FILE_LOG,
            "path": ctx.access_log_path("i"),
            "log_format": {"text_format_source": {"inline_string": "%FILTER_STATE(wasm.dpp_access_log:PLAIN)%\n"}},
        },
    }]


def records_written(ctx, e):
    """Every request leaves a record; a PII query string never reaches the log."""
    import time
    import urllib.request

    pii = "maria.schmidt@marketplace.example"
    req = urllib.request.Request(f"http://127.0.0.1:{e.port}{UNPROTECTED_PATH}?buyer={pii}", method="GET")
    with urllib.request.urlopen(req, timeout=10):
        pass
    path = ctx.access_log_path("i")
    # Envoy flushes file access logs every 10 s by default; reopening the
    # logs (admin /reopen_logs, what logrotate triggers) writes them out now.
    urllib.request.urlopen(urllib.request.Request(e.admin + "/reopen_logs", method="POST"), timeout=10).read()
    deadline = time.time() + 15
    text = ""
    while time.time() < deadline:
        text = open(path).read() if os.path.exists(path) else ""
        if len([ln for ln in text.splitlines() if ln.strip() not in ("", "-")]) >= 3:
            break
        time.sleep(0.2)
    records = [ln for ln in text.splitlines() if ln.strip() not in ("", "-")]
    assert len(records) >= 3, f"expected an access record per request, found {len(records)}"
    json.loads(records[-1])
    assert pii not in text, "a PII query string reached the access log"


def guard_refuses_plaintext(ctx, sent, rec):
    """Sent to the plaintext recorder cluster, the request must be refused before any byte leaves."""
    assert rec is None, "the upstream guard let a request reach a plaintext upstream"


def pii_decrypted(ctx, sent, rec):
    """The upstream gets the original order back, every field in clear."""
    assert rec is not None, "upstream received nothing"
    assert json.loads(rec["body"]) == ctx.order_doc, "decrypted body differs from the original order"
    assert json.loads(sent) != ctx.order_doc, "the decrypt path was not given envelopes"


def _encrypted_order(ctx):
    """The order as the encrypt path (f) sends it upstream: envelopes in every PII field."""
    return ctx.through("f", ORDERS_PATH, ctx.order_body)


def _encrypted_objects(ctx):
    """The order as (f2) sends it upstream: one envelope per PII object."""
    return ctx.through("f2", ORDERS_PATH, ctx.order_body)


CONFIGS = [
    Config("a", "Envoy, no Wasm filter", check=same_bytes),
    Config("b", "null proxy-wasm filter", filters=_null, check=same_bytes),
    Config("c", "naive: parse + serialize (serde_json)", filters=_naive_json, check=same_json),
    Config("d", "naive: (c) + AES-256-GCM-SIV per field", filters=_naive_crypto, check=pii_encrypted),
    Config("a-tls", "Envoy, no Wasm filter, TLS upstream", tls_upstream=True, check=same_bytes),
    Config("e", "dpp-guard, unprotected route", filters=_dpp(UNPROTECTED_POLICY),
           path=UNPROTECTED_PATH, check=same_bytes),
    Config("f", "dpp-guard, encrypt all preset PII fields", filters=_dpp(ENCRYPT_POLICY), check=pii_encrypted),
    Config("g", "dpp-guard, decrypt path", filters=_dpp(DECRYPT_POLICY), body=_encrypted_order,
           check=pii_decrypted),
    Config("f2", "dpp-guard, encrypt preset PII objects (granularity object)",
           filters=_dpp(ENCRYPT_OBJECTS_POLICY), check=pii_encrypted),
    Config("g2", "dpp-guard, decrypt path, granularity object", filters=_dpp(DECRYPT_OBJECTS_POLICY),
           body=_encrypted_objects, check=pii_decrypted),
    Config("h", "dpp-guard upstream TLS guard, pooled TLS connections", tls_upstream=True,
           upstream_filters=_upstream_guard, check=guard_refuses_plaintext,
           expected_events=("upstream_plaintext_refused",)),
    Config("i", "dpp-guard, unprotected route, access records on", filters=_dpp(RECORDS_POLICY),
           path=UNPROTECTED_PATH, access_log=_access_log, check=same_bytes, check_live=records_written),
]

# The rows every ratio is taken against.
BASELINES = ["a", "b", "c"]


def selected(keys):
    if not keys:
        return list(CONFIGS)
    wanted = set(keys.split(","))
    unknown = wanted - {c.key for c in CONFIGS}
    if unknown:
        raise SystemExit(f"unknown configuration(s): {', '.join(sorted(unknown))}")
    # A configuration whose body comes from another needs that one running too.
    needs = {"g": {"f"}, "g2": {"f2"}}
    for k in list(wanted):
        wanted |= needs.get(k, set())
    return [c for c in CONFIGS if c.key in wanted or c.key in BASELINES]

