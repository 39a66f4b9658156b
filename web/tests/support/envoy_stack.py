"""One real Envoy 1.40 running the compiled dpp_guard filter in front of an
echo service, for the Node interop tests (web/tests/interop.test.mjs).

Usage: envoy_stack.py POLICY.json   (keyring in the DPP_GUARD_KEYS environment variable)

Prints one JSON line {"port", "ca"} once Envoy listens (TLS, certificate
for `localhost` signed by the CA at "ca"), then runs until its standard
input closes, and stops Envoy and the service. The service answers every
request with the body it received, byte for byte: the response shows what
the filter forwarded.
"""
from __future__ import annotations

import json
import os
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(ROOT / "tests"))

from support.pki import TestPki  # noqa: E402
from support.stack import GuardStack  # noqa: E402
from support.twohop import BOOTSTRAP, HOP_B  # noqa: E402
from support.upstream import ReceivedRequest, ScriptedResponse  # noqa: E402


def echo(req: ReceivedRequest) -> ScriptedResponse:
    return ScriptedResponse(headers={"content-type": "application/json"}, body=req.body or b"{}")


def main() -> None:
    policy = json.loads(Path(sys.argv[1]).read_text())
    keys = os.environ["DPP_GUARD_KEYS"]
    with tempfile.TemporaryDirectory(prefix="dpp-web-envoy-") as tmp:
        pki = TestPki(Path(tmp) / "pki")
        # HOP_B's ECDS passes DPP_GUARD_KEYS into the VM; its policy is replaced by ours.
        stack = GuardStack(pki, workdir=Path(tmp) / "stack", policy=policy, responder=echo,
                           env={"DPP_GUARD_KEYS": keys}, ecds=HOP_B, bootstrap=BOOTSTRAP)
        with stack:
            print(json.dumps({"port": stack.port, "ca": str(pki.ca_cert),
                              "log": str(stack.envoy.log_path)}), flush=True)
            sys.stdin.read()


if __name__ == "__main__":
    main()
