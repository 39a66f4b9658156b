"""Every scenario file in tests/scenarios runs twice: in the wasmtime harness
(`dpp-guard-harness run`) and against a real Envoy 1.40 with the shipped
configuration. Both sides must meet the scenario's expectations (Envoy's
observations are checked by the same Rust checker, `dpp-guard-harness
check`), and the two must agree with each other on status, headers, body,
local reply and what the service received: a divergence fails the test, so
the harness is held to Envoy's behaviour continuously.
"""
from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

import pytest
import yaml

from support import client
from support.envoy import Envoy, render, write_ecds
from support.paths import ROOT, WASM
from support.stack import GuardStack
from support.upstream import ScriptedResponse

SCENARIOS = sorted((ROOT / "tests" / "scenarios").glob("*.yaml"))
# Scenarios for the harness's own probe module: host behaviour held to Envoy's.
FIDELITY = sorted((ROOT / "harness" / "tests" / "fidelity").glob("*.yaml"))

# Headers one side adds for transport reasons, not filter behaviour.
IGNORED_RESPONSE = {"date", "server", "x-envoy-upstream-service-time", "transfer-encoding",
                    "connection", "keep-alive"}
IGNORED_UPSTREAM = {"x-forwarded-proto", "x-request-id", "x-envoy-expected-rq-timeout-ms",
                    "x-forwarded-for", "x-envoy-internal", "transfer-encoding", "connection",
                    "keep-alive"}


@pytest.fixture(scope="session")
def harness_bin() -> Path:
    if os.environ.get("HARNESS_BIN"):
        return Path(os.environ["HARNESS_BIN"])
    # The same cargo invocation as `make test-bins`, so a no-op after it:
    # `cargo build -p dpp-guard-harness` alone unifies features differently
    # and rebuilds wasmtime (minutes on a CI machine).
    subprocess.run(["cargo", "test", "--quiet", "--workspace", "--exclude", "dpp-guard", "--no-run"],
                   cwd=ROOT, check=True, stdout=subprocess.DEVNULL)
    return ROOT / "target" / "debug" / "dpp-guard-harness"


@pytest.fixture(scope="session")
def test_modules() -> Path:
    """The harness's own modules (probe, root-only), which fidelity scenarios
    name in `plugin.wasm`. A no-op when `make test-modules` built them."""
    target = ROOT / "target" / "test-modules"
    subprocess.run(["cargo", "build", "--quiet", "--release", "--target", "wasm32-wasip1",
                    "--manifest-path", str(ROOT / "harness" / "test-modules" / "Cargo.toml"),
                    "--target-dir", str(target)], cwd=ROOT, check=True)
    return target / "wasm32-wasip1" / "release"


def body_of(spec: dict) -> bytes | None:
    if spec.get("chunks") is not None:
        return "".join(spec["chunks"]).encode()
    if spec.get("body") is not None:
        return spec["body"].encode()
    if spec.get("json") is not None:
        # Same bytes as serde_json::Value::to_string in the harness.
        return json.dumps(spec["json"], sort_keys=True, separators=(",", ":"),
                          ensure_ascii=False).encode()
    return None


def scripted(spec: dict | None) -> ScriptedResponse:
    if spec is None:
        return ScriptedResponse()
    return ScriptedResponse(status=spec.get("status", 200),
                            headers={k.lower(): str(v) for k, v in (spec.get("headers") or {}).items()},
                            body=body_of(spec) or b"")


def start_stack(pki, workdir: Path, scenario: dict, setup: dict) -> GuardStack:
    """The shipped configuration (as GuardStack.start writes it) with the
    scenario's module, ids, policy and environment, as the harness ran them
    (`setup`, from `dpp-guard-harness run --json`). Environment variables
    reach the module as Envoy delivers secrets: host_env_keys copies them
    from Envoy's own environment. Without an upstream root id the router's
    upstream filter is dropped (modules that are not dpp_guard)."""
    plugin = scenario["plugin"]
    config = plugin.get("config")
    policy = config if config is not None else ""
    env = {k: str(v) for k, v in (plugin.get("env") or {}).items()}
    stack = GuardStack(pki, workdir=workdir, policy=policy, env=env)
    stack.service.start()
    values = dict(stack.values(), DPP_GUARD_WASM=ROOT / setup["module"])
    # Keyed by the ECDS resource names of the test configuration.
    policies = {"dpp_guard": policy, "dpp_upstream_guard": policy}
    root_ids = {"dpp_guard": setup["root_id"], "dpp_upstream_guard": setup.get("upstream_root_id")}
    for template, out in ((stack.ecds, values["DPP_GUARD_ECDS"]),
                          (stack.upstream_guard_ecds, values["DPP_UPSTREAM_GUARD_ECDS"])):
        ecds = write_ecds(template, out, values, policies)
        doc = yaml.safe_load(ecds.read_text())
        resource = doc["resources"][0]
        cfg = resource["typed_config"]["config"]
        # The plugin is named after its root id, as in the harness.
        cfg["root_id"] = cfg["name"] = root_ids[resource["name"]] or ""
        cfg["vm_config"]["vm_id"] = setup["vm_id"]
        if env:
            cfg["vm_config"].setdefault("environment_variables", {})["host_env_keys"] = sorted(env)
        ecds.write_text(yaml.safe_dump(doc, sort_keys=False))
    bootstrap = render(stack.bootstrap, values)
    if setup.get("upstream_root_id") is None:
        doc = yaml.safe_load(bootstrap)
        for listener in doc["static_resources"]["listeners"]:
            for chain in listener["filter_chains"]:
                for f in chain["filters"]:
                    for hf in f["typed_config"].get("http_filters", []):
                        hf.get("typed_config", {}).pop("upstream_http_filters", None)
        bootstrap = yaml.safe_dump(doc, sort_keys=False)
    stack.envoy = Envoy(bootstrap, stack.workdir, env=env)
    return stack


def wait_for_lines(envoy: Envoy, start: int, needles: list[str], seconds: float = 5.0) -> list[str]:
    """Plugin log lines after index `start`, waiting until every needle showed up."""
    deadline = time.monotonic() + seconds
    while True:
        lines = envoy.plugin_lines()[start:]
        if all(any(n in l for l in lines) for n in needles) or time.monotonic() > deadline:
            return lines
        time.sleep(0.05)


def observe_envoy(pki, tmp_path: Path, scenario: dict, envoys: list, setup: dict) -> dict:
    stack = start_stack(pki, tmp_path / "stack", scenario, setup)
    try:
        stack.envoy.start()
        envoys.append(stack.envoy)
        stack.port = stack.envoy.listener_port("dpp_ingress")
        startup = scenario.get("startup") or {}
        startup_logs = wait_for_lines(stack.envoy, 0, (startup.get("logs") or {}).get("contains", []))
        streams = []
        for step in scenario["streams"]:
            req = step["request"]
            stack.service.respond_with(scripted(step.get("upstream") or scenario.get("upstream")))
            seen_before = len(stack.service.requests)
            logs_before = len(stack.envoy.plugin_lines())
            r = client.request(stack.port, req.get("method", "GET").upper(), req["path"],
                               ca=pki.ca_cert, host=req.get("host", "localhost"),
                               headers={k.lower(): str(v) for k, v in (req.get("headers") or {}).items()},
                               body=body_of(req))
            received = stack.service.requests[seen_before:]
            assert len(received) <= 1, "one request per stream"
            upstream = None
            if received:
                q = received[0]
                upstream = {"method": q.method, "path": q.path,
                            "headers": [[k, v] for k, v in q.headers.items()],
                            "body": q.body.decode("utf-8", "replace")}
            expect_logs = ((step.get("expect") or {}).get("logs") or {}).get("contains", [])
            streams.append({
                "name": step["name"], "status": r.status,
                "headers": [[k, v] for k, v in r.headers.items()],
                "body": r.body.decode("utf-8", "replace"),
                "local_reply": upstream is None, "upstream": upstream,
                "logs": wait_for_lines(stack.envoy, logs_before, expect_logs), "problems": [],
            })
        return {"scenario": scenario["name"], "configured": None, "startup_logs": startup_logs,
                "streams": streams}
    finally:
        stack.stop()


def comparable(headers, ignored) -> dict[str, str]:
    return {k.lower(): v for k, v in headers if k.lower() not in ignored}


def divergences(harness: dict, envoy: dict) -> list[str]:
    out = []
    for h, e in zip(harness["streams"], envoy["streams"], strict=True):
        name = h["name"]
        for key in ("status", "body", "local_reply"):
            if h[key] != e[key]:
                out.append(f"{name}: {key}: harness {h[key]!r}, envoy {e[key]!r}")
        hh = comparable(h["headers"], IGNORED_RESPONSE)
        eh = comparable(e["headers"], IGNORED_RESPONSE)
        if hh != eh:
            out.append(f"{name}: response headers differ:\n  harness {hh}\n  envoy   {eh}")
        hu, eu = h["upstream"], e["upstream"]
        if (hu is None) != (eu is None):
            out.append(f"{name}: upstream received: harness {hu is not None}, envoy {eu is not None}")
        elif hu is not None:
            for key in ("method", "path", "body"):
                if hu[key] != eu[key]:
                    out.append(f"{name}: upstream {key}: harness {hu[key]!r}, envoy {eu[key]!r}")
            hh = comparable(hu["headers"], IGNORED_UPSTREAM)
            eh = comparable(eu["headers"], IGNORED_UPSTREAM)
            if hh != eh:
                out.append(f"{name}: upstream headers differ:\n  harness {hh}\n  envoy   {eh}")
    return out


def run_both(path: Path, wasm: Path, harness_bin: Path, pki, tmp_path: Path, envoys: list):
    """Runs one scenario on both sides; reports every failure of either side
    at once. `wasm` is the module for scenarios that name none (dpp_guard);
    Envoy runs the module and ids the harness reports it ran."""
    scenario = yaml.safe_load(path.read_text())
    failures = []

    report = subprocess.run([str(harness_bin), "run", "--wasm", str(wasm), str(path)],
                            cwd=ROOT, capture_output=True, text=True)
    if report.returncode != 0:
        failures.append(f"the harness does not meet the scenario:\n{report.stdout}{report.stderr}")
    if scenario.get("harness_only"):
        # Drives what Envoy cannot be made to do on request (the virtual
        # clock, the worker of a stream, identities it would have verified);
        # the scenario says which end-to-end test covers it in Envoy.
        assert not failures, "\n\n".join(failures)
        return
    run = subprocess.run([str(harness_bin), "run", "--json", "--wasm", str(wasm), str(path)],
                         cwd=ROOT, capture_output=True, text=True)
    (harness_obs,) = json.loads(run.stdout)

    envoy_obs = observe_envoy(pki, tmp_path, scenario, envoys, harness_obs["setup"])
    observed = tmp_path / "envoy-observed.json"
    observed.write_text(json.dumps(envoy_obs, indent=1))
    check = subprocess.run([str(harness_bin), "check", "--observed", str(observed), str(path)],
                           cwd=ROOT, capture_output=True, text=True)
    if check.returncode != 0:
        failures.append(f"Envoy does not meet the scenario:\n{check.stdout}{check.stderr}")

    diff = divergences(harness_obs, envoy_obs)
    if diff:
        failures.append("harness and Envoy diverge:\n" + "\n".join(diff))
    assert not failures, "\n\n".join(failures)


@pytest.mark.parametrize("path", SCENARIOS, ids=[p.stem for p in SCENARIOS])
def test_scenario_in_harness_and_envoy_agree(path, harness_bin, wasm, test_modules, pki, tmp_path,
                                             envoys):
    run_both(path, wasm, harness_bin, pki, tmp_path, envoys)


@pytest.mark.parametrize("path", FIDELITY, ids=[p.stem for p in FIDELITY])
def test_harness_host_matches_envoy_on_the_probe_module(path, harness_bin, test_modules, pki,
                                                        tmp_path, envoys):
    # These scenarios name their module (plugin.wasm): no dpp_guard needed.
    run_both(path, WASM, harness_bin, pki, tmp_path, envoys)


def test_divergence_is_detected():
    """The comparison is not vacuous: a different header or status is caught."""
    stream = {"name": "s", "status": 200, "headers": [["pragma", "no-cache"]], "body": "",
              "local_reply": False, "upstream": {"method": "GET", "path": "/", "headers": [],
                                                 "body": ""}}
    envoy = {"streams": [dict(stream, headers=[["pragma", "no-cache"], ["date", "now"]])]}
    assert divergences({"streams": [stream]}, envoy) == []
    assert divergences({"streams": [dict(stream, status=503)]}, envoy)
    assert divergences({"streams": [dict(stream, headers=[])]}, envoy)
    assert divergences({"streams": [dict(stream, upstream=None, local_reply=True)]}, envoy)
