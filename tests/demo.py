#!/usr/bin/env python3
"""`make demo` / `make run`: dpp-guard in a real Envoy, and what each hop saw.

    client --TLS--> Envoy (dpp_guard, policy envoy/policies/orders.json) --TLS--> service

The demo sends a scripted set of requests and prints, for each, what the
client got back and what the service received. `--serve` keeps the stack up
until Ctrl-C and prints curl commands to paste. Every process is stopped on
exit, also on error or Ctrl-C.
"""
from __future__ import annotations

import argparse
import base64
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from support.paths import ROOT  # noqa: E402
from support.pki import TestPki  # noqa: E402
from support.stack import GuardStack  # noqa: E402
from support.upstream import ReceivedRequest, ScriptedResponse  # noqa: E402

ORDER_ADDRESS = {"payload": {"AmazonOrderId": "902-3159896-1390916",
                             "ShippingAddress": {"Name": "Jane Doe", "AddressLine1": "1 Main St",
                                                 "City": "Seattle", "PostalCode": "98101"}}}

SCRIPT = [
    ("unprotected route: passes untouched", "GET", "/catalog/2022-04-01/items/B00EXAMPLE"),
    ("PII route: response marked no-store", "GET", "/orders/v0/orders/902-3159896-1390916/address"),
    ("legacy channel behind the kill switch", "POST", "/mws/Orders/2013-09-01"),
    ("PII in the query string: the service needs it, the logs never see it", "GET",
     "/orders/v0/orders?BuyerEmail=jane.doe%40example.com&MarketplaceIds=ATVPDKIKX0DER"),
]

# Headers a browser or SDK sends: credentials and device data, PII for the logs.
CLIENT_HEADERS = {"content-type": "application/json", "user-agent": "Mozilla/5.0 (Jane's Pixel 8)",
                  "authorization": "Bearer eyJhbGciOiJIUzI1NiJ9.demo.sig"}


def service(req: ReceivedRequest) -> ScriptedResponse:
    """The trusted service: answers orders with PII, anything else with a small JSON."""
    if req.path.startswith("/orders/"):
        return ScriptedResponse(headers={"content-type": "application/json", "cache-control": "max-age=300"},
                                body=json.dumps(ORDER_ADDRESS).encode())
    return ScriptedResponse(body=b'{"item":"B00EXAMPLE"}')


def show(title: str, lines: list[str]) -> None:
    print(f"\n== {title}")
    for line in lines:
        print(f"   {line}")


def run_script(stack: GuardStack) -> None:
    for title, method, path in SCRIPT:
        before = len(stack.service.requests)
        r = stack.request(method, path, headers=CLIENT_HEADERS,
                          body='{"ping":1}' if method == "POST" else None)
        reached = stack.service.requests[before:]
        headers = ", ".join(f"{h}: {r.headers[h]}" for h in ("cache-control", "pragma") if h in r.headers)
        show(title, [
            f"client sent   : {method} {path}",
            f"client got    : {r.status} {headers or '(no cache headers added)'}",
            f"client body   : {r.body.decode()[:100]}",
            "service saw   : " + (", ".join(f"{q.method} {q.path}" for q in reached) or "nothing"),
        ])
    events = [l.split("dpp_event ", 1)[1] for l in stack.envoy.plugin_lines() if "dpp_event " in l]
    show("security events in Envoy's log", events)
    show_access_log(stack)


def show_access_log(stack: GuardStack) -> None:
    """Envoy's access log prints only dpp_guard's scrubbed, sealed record."""
    deadline = time.monotonic() + 5
    while stack.access_log().count("\n") < len(SCRIPT) and time.monotonic() < deadline:
        time.sleep(0.1)
    show("Envoy's access log (docs/logging.md)", stack.access_log().splitlines())
    cli = ROOT / "target" / "debug" / "dpp-guard"
    if cli.exists():
        r = subprocess.run([str(cli), "verify-log", "--from-start", str(stack.access_log_path)],
                           capture_output=True, text=True, env={**os.environ, **stack.env})
        show("dpp-guard verify-log access.log", (r.stdout + r.stderr).splitlines())


def serve(stack: GuardStack) -> None:
    base = f"curl -sS -i --cacert {stack.pki.ca_cert} https://localhost:{stack.port}"
    show("dpp-guard is up; paste these (Ctrl-C stops everything)", [
        f"{base}/catalog/2022-04-01/items/B00EXAMPLE",
        f"{base}/orders/v0/orders/902-3159896-1390916/address",
        f"{base}/mws/Orders/2013-09-01 -X POST -d '{{}}'",
        f"Envoy admin : {stack.envoy._admin}/stats?filter=wasm",
        f"Envoy log   : {stack.envoy.log_path}",
    ])
    try:
        signal.pause()
    except KeyboardInterrupt:
        # Further Ctrl-C must not interrupt the clean-up that stops Envoy.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--serve", action="store_true", help="keep the stack up until Ctrl-C")
    args = ap.parse_args()
    # SIGTERM stops the stack the same way Ctrl-C does.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    with tempfile.TemporaryDirectory(prefix="dpp-demo-") as tmp:
        pki = TestPki(Path(tmp) / "pki")
        # A fresh log key per run: pseudonyms and the access-log MAC chain.
        env = {"DPP_GUARD_LOG_KEY": base64.b64encode(os.urandom(32)).decode()}
        with GuardStack(pki, workdir=Path(tmp) / "stack", responder=service, env=env) as stack:
            print(f"Envoy 1.40 with dpp_guard on https://localhost:{stack.port}, service on :{stack.service.port}")
            if args.serve:
                serve(stack)
            else:
                run_script(stack)
    print("\nstopped Envoy and the service.")
    if args.serve:
        return 0
    # Part two: field encryption across an untrusted hop (two Envoys, a relay).
    from demo_encryption import run as run_encryption_demo

    return 0 if run_encryption_demo() else 1


if __name__ == "__main__":
    sys.exit(main())
