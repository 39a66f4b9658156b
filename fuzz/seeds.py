#!/usr/bin/env python3
"""Writes the seed inputs of every fuzz target into fuzz/seeds/<target>/.

Seeds come from the project's test data: the shipped and documented
policies and the scenario files' policies, the SP-API payloads of the
end-to-end tests, envelopes made by the project's CLI with the fuzz
fixture keyring, the scrubber's test strings, and the bad inputs of the
end-to-end catalogue. `make fuzz-seed` runs this and minimises the result
into fuzz/corpus/ with `cargo fuzz cmin`; the minimised corpus is what is
committed (this script documents where it came from).
"""
from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
from support.sp_api import OPERATIONS  # noqa: E402

OUT = Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "fuzz" / "seeds"
CLI = ROOT / "target" / "debug" / "dpp-guard"
# fuzz/checks/src/fixtures.rs
KEYRING = ("primary=k1 k1=AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8 "
           "k2=ICEiIyQlJicoKSorLC0uLzAxMjM0NTY3ODk6Ozw9Pj8")


def write(target: str, data: bytes) -> None:
    d = OUT / target
    d.mkdir(parents=True, exist_ok=True)
    (d / hashlib.sha1(data).hexdigest()).write_bytes(data)


def policies() -> list[bytes]:
    docs = [p.read_bytes() for p in sorted((ROOT / "envoy" / "policies").glob("*.json"))]
    docs += [p.read_bytes() for p in sorted((ROOT / "docs" / "examples").glob("*.json"))]
    for scenario in sorted((ROOT / "tests" / "scenarios").glob("*.yaml")):
        cfg = (yaml.safe_load(scenario.read_text()).get("plugin") or {}).get("config")
        if cfg is not None:
            docs.append(cfg.encode() if isinstance(cfg, str) else json.dumps(cfg).encode())
    return docs


BODIES = [json.dumps(doc).encode() for _, doc in OPERATIONS.values()] + [
    json.dumps(OPERATIONS["getOrderBuyerInfo"][1], indent=2).encode(),
    b'{ "z" : 1.50E+3 ,\n\t"payload": {"BuyerEmail" :"a@b.c" , "n":-0.0},"a":[ ]}  ',
    b'{"a":{"b":1,"b":{"c":2}},"a":[1,2]}',
    b'{"a":"\\ud800","b c":"\\u00e9\\n","\\u00e9":[true,false,null]}',
    b'{"a":1e400,"b":-123456789012345678901234567890,"c":0.000000000000000000001}',
    b'\xef\xbb\xbf{"a":1}',
    b'{"a":"\xff\xfe"}',
    b'[' * 130 + b']' * 130,
    b'{"a":' * 127 + b'1' + b'}' * 127,
    b'{"a":[{"b":"x"},{"b":{"c":[1,{"c":2}]}}],"Phone":"+1 206"}',
    b'{"payload":{"BuyerInfo":{"BuyerEmail":"x@y.z"}}}',
    b'"\\u0000"', b'[]', b'{}', b'0', b'-0.5e-3', b'"a"', b'tru', b'{"a":1,}', b'[1 2]',
]


def splice_seeds() -> None:
    # flags: count-1 (bits 0-1), deterministic (bit 2), blind index (bit 3), context length (bits 4-7)
    headers = [bytes([0x00, 0]), bytes([0x01, 3, 9]), bytes([0x1e, 1, 7, 12, ord("c")]),
               bytes([0x03, 10, 15, 8, 14]), bytes([0x04, 4]), bytes([0x08, 5]),
               bytes([0x00, 16 + 9]) + b"$..BuyerEmail"]
    for h in headers:
        for body in BODIES:
            write("splice", h + body)


def encrypted(policy: dict, route: str, direction: str, doc: bytes) -> bytes:
    path = OUT / "policy.tmp.json"
    path.write_text(json.dumps(policy))
    try:
        return subprocess.run([str(CLI), "encrypt", "--policy", str(path), "--route", route,
                               "--direction", direction, "-"], input=doc, capture_output=True,
                              check=True, env={**os.environ, "DPP_GUARD_KEYS": KEYRING}).stdout
    finally:
        path.unlink()


# fuzz/checks/src/body.rs's policy, keys from the environment for the CLI.
BODY_POLICY = {"version": 1, "keys": {"env": "DPP_GUARD_KEYS"}, "routes": [
    {"name": "preset", "match": {"path": {"prefix": "/p/"}},
     "encrypt": [{"direction": "request", "preset": "sp-api-orders", "context": "c"}],
     "decrypt": [{"direction": "response", "preset": "sp-api-orders", "context": "c"}],
     "body": {"max_bytes": 600}}]}


def envelopes(doc: bytes) -> list[str]:
    out = []

    def walk(v):
        if isinstance(v, str) and v.startswith("dpg1."):
            out.append(v)
        elif isinstance(v, dict):
            for x in v.values():
                walk(x)
        elif isinstance(v, list):
            for x in v:
                walk(x)
    walk(json.loads(doc))
    return out


def envelope_seeds() -> None:
    path = b"$.payload.BuyerEmail"
    for det, blind in [(False, False), (True, True), (False, True)]:
        policy = {"version": 1, "keys": {"env": "DPP_GUARD_KEYS"}, "routes": [
            {"name": "r", "match": {"path": {"prefix": "/"}},
             "encrypt": [{"direction": "request", "selectors": ["$.payload.BuyerEmail"], "context": "ctx",
                          "mode": "deterministic" if det else "random", "blind_index": blind}]}]}
        enc = encrypted(policy, "r", "request", b'{"payload":{"BuyerEmail":"jq7f2k9x@example.com"}}')
        for env in envelopes(enc):
            write("envelope", bytes([0, len(path)]) + path + bytes([3]) + b"ctx" + env.encode())
            write("envelope", bytes([0, len(path)]) + path + bytes([0]) + env[:-5].encode())
    for raw in [b'"jq7f2k9x@example.com"', b'{"a":[1,2.50,"\\u00e9"]}', b'null', b'"\\ud83d\\ude00"', b'-0']:
        for flags in (0, 1, 2, 3):
            write("envelope", bytes([1, flags, 7, 0, 0x20, len(path)]) + path + bytes([1]) + b"c" + raw)


SCRUB_TEXTS = [
    "a@b.com from 10.0.0.1 card 4111-1111-1111-1111 tel +49 30 1234567",
    "/orders/123-4567890-1234567/buyer/jane%40example.com?BuyerEmail=jane%40example.com&MarketplaceIds=ATVPDKIKX0DER&ip=10.1.2.3",
    "/orders?Name=Jane+Doe&CreatedAfter=2026-01-01&postal_code=98109",
    "/devices/aa-bb-cc-dd-ee-ff/x wlan0 3C:22:FB:0A:1B:2C",
    "jane%2540example.com %252B49%2520301234567 fe80::1%25eth0 [2001:db8::1]:443",
    '{"BuyerEmail": "x@y.z", "Phone":"+1 (206) 555-0147", \'City\' = \'Seattle\'}',
    "CN=jane.doe@example.com,O=Seller",
    "Bearer eyJhbGciOi.abc.def",
    "session=abc123secret; theme=dark",
    "Mozilla/5.0 (X11; Linux x86_64) 192.168.1.20",
    "https://shop.example.com/cart?email=a%40b.co#x",
    "203.0.113.7:50000",
    "4111111111111111 5500 0000 0000 0004 371449635398431",
]


def scrub_seeds() -> None:
    for text in SCRUB_TEXTS:
        for op in (0, 32, 64, 64 + 9, 96, 112, 0x80, 0x80 + 32, 0x80 + 64):
            header = bytes([op])
            if 64 <= op & 0x7f < 96:
                header += bytes([op % 14])
            elif 96 <= op & 0x7f < 112:
                header += bytes([11]) + b"x-buyer-email"[:11]
            write("scrub", header + text.encode())


def chain_seeds() -> None:
    # op bit 0: sealed chain + edits; bit 1: no key (sealed chains) / from_start (raw logs); bit 2: two workers
    for op in (1, 3, 5):
        for edits in (b"\x00", b"\x01\x00\x00\x00\x00\x00", b"\x02\x03\x01\x05\x00\x07\x06\x02\x00\x00\x00"):
            write("chain", bytes([op, 3, 0, 4]) + b"/a/b" + bytes([1, 3]) + b"/x@" + bytes([0, 0]) + edits)
    write("chain", b"\x00" + b'{"dpp_access":1,"worker":"w","seq":0,"prev":"AAAA","mac":"AAAA"}\n')
    write("chain", b"\x02" + json.dumps({"msg": '{"dpp_access":1,"worker":"w","seq":0}'}).encode())


def body_seeds() -> None:
    buyer = json.dumps(OPERATIONS["getOrderBuyerInfo"][1]).encode()
    enc = encrypted(BODY_POLICY, "preset", "request", buyer)
    for flags in (0, 1, 2, 3, 4 * 4, 4 * 5 + 1, 32 * 2, 32 * 1 + 2):
        for more in (0, 1, 2):
            for chunks in (b"\x00", b"\x03\x01\x10\x40", b"\x0f" + bytes(range(1, 16))):
                for body in (buyer, enc, b'{"a":[1,"x"],"BuyerEmail":"q@r.st"}', b'{"a":'):
                    write("body", bytes([flags, more]) + chunks + body)


PATHS = [
    "/orders/v0/orders/1", "/ORDERS/v0/orders/1", "/%6frders/1", "/%6Frders/1", "/orders%2f1", "/orders%2F1",
    "//orders/1", "/public//../orders/1", "/public/../orders/1", "/x/%2e%2e/orders/1", "/orders;x=1/1",
    "/orders./1", "/orders/%252e%252e/x", "/orders\\1", "/orders%5c1", "/items/123", "/items/12a",
    "/buyer/info?x=1", "/buyer/info/", "/buyer//info", "/mws/x", "*", "http://x/orders/", "/orders/%20",
    "/orders/caf%C3%A9", "/orders/\u017f", "/orders/1#frag", "/orders/1?BuyerEmail=a%40b.c", "/.", "/..", "/a/b/..",
    "/orders/%", "/orders/%zz", "/orders/%2", "/%2E%2E/orders/1", "/orders/1/.", "/orders/1/..",
]


def stream_seeds() -> None:
    # fuzz/checks/src/stream.rs: a, b, c, d flag bytes, chunk sizes, u16 request length, bodies.
    doc = json.dumps({"payload": {"AmazonOrderId": "1", "BuyerEmail": "q@r.st", "BuyerName": "Q R",
                                  "ShippingAddress": {"City": "C", "Phone": "1"}}, "a": [1, "x"]}).encode()
    buyer = json.dumps(OPERATIONS["getOrderBuyerInfo"][1]).encode()
    for a in (0x08, 0x09, 0x0a, 0x0b, 0x1b, 0x48, 0x3c, 0x0d):
        for b in (0x00, 0x80, 0xc0, 0x43, 0x08, 0x01):
            for c, d in ((0x00, 0), (0x80, 3), (0x20, 1), (0x04, 0), (0x00, 0x40)):
                for req in (doc, buyer, b'{"a":', b""):
                    sizes = bytes([3, 1, 7, 30]) if len(req) > 40 else bytes([0])
                    write("stream", bytes([a, b, c, d]) + sizes + bytes([2, 5, 40])
                          + len(req).to_bytes(2, "little") + req + doc)


def main() -> None:
    for doc in policies():
        write("policy", doc)
    splice_seeds()
    envelope_seeds()
    scrub_seeds()
    chain_seeds()
    body_seeds()
    stream_seeds()
    for p in PATHS:
        for mode in (0, 1):
            write("path", bytes([mode]) + p.encode())
    for d in sorted(OUT.iterdir()):
        print(f"{d.name}: {len(list(d.iterdir()))} seeds")


if __name__ == "__main__":
    main()
