"""Shared helpers for the offline checks of deploy/ (manifests, OCI image, alerts).

No cluster runs here, so every artifact is checked with the real tool that
would judge it: check-jsonschema against the CRD schemas, a CEL engine for
the CRDs' CEL rules, Envoy itself for the EnvoyFilter's router patch,
skopeo + Debian's docker-registry for the image, promtool for the alerts.

A missing tool is installed (apt-get, we are root in CI); if that is not
possible the test FAILS, it is never skipped: a green run must mean the
checks ran.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
# Envoys a test uses but does not own (module-scoped stacks): their logs go
# into the report of a failing test (tests/deploy/conftest.py).
SHOWN_ENVOYS = pytest.StashKey[list]()
DEPLOY = ROOT / "deploy"
WASM = ROOT / "target" / "wasm32-wasip1" / "release" / "dpp_guard.wasm"
sys.path.insert(0, str(DEPLOY / "tools"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

# Debian package for each command the checks need.
APT_PACKAGES = {"skopeo": "skopeo", "docker-registry": "docker-registry", "promtool": "prometheus"}
# Commands taken out of their .deb instead of installing the package:
# installing `prometheus` would also start a Prometheus server where systemd
# runs; promtool alone is a self-contained binary (needs only libc).
EXTRACT_ONLY = {"promtool": "usr/bin/promtool"}
TOOLS = ROOT / "target" / "deploy-tools"


def _apt(*args: str, cwd: Path | None = None) -> None:
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    subprocess.run(["apt-get", *args], check=True, env=env, cwd=cwd, stdout=subprocess.DEVNULL)


def tool(command: str) -> str:
    """Path of `command`, installing it from Debian's packages when missing.
    Fails (never skips) when that is impossible."""
    found = shutil.which(command)
    if found:
        return found
    if command in EXTRACT_ONLY:
        extracted = TOOLS / "root" / EXTRACT_ONLY[command]
        if extracted.exists():
            return str(extracted)
    if os.geteuid() != 0:
        pytest.fail(f"{command} missing; install the Debian package {APT_PACKAGES[command]}")
    _apt("update", "-q")
    if command in EXTRACT_ONLY:
        debs = TOOLS / "debs"
        debs.mkdir(parents=True, exist_ok=True)
        _apt("download", "-q", APT_PACKAGES[command], cwd=debs)
        for deb in sorted(debs.glob(f"{APT_PACKAGES[command]}_*.deb")):
            subprocess.run(["dpkg-deb", "-x", str(deb), str(TOOLS / "root")], check=True)
        extracted = TOOLS / "root" / EXTRACT_ONLY[command]
        if not extracted.exists():
            pytest.fail(f"{command} not found in the {APT_PACKAGES[command]} package")
        return str(extracted)
    _apt("install", "-y", "-q", "--no-install-recommends", APT_PACKAGES[command])
    found = shutil.which(command)
    if not found:
        pytest.fail(f"could not install {command}")
    return found


def ensure_commands(*commands: str) -> list[str]:
    return [tool(c) for c in commands]


def shared_schemas() -> Path | None:
    """The project's reference CRD schemas: shared/schemas beside the checkout
    (CI lays shared/ next to the clone)."""
    for parent in ROOT.parents:
        cand = parent / "shared" / "schemas"
        if (cand / "istio-wasmplugin-v1alpha1.json").is_file():
            return cand
    return None


VENDORED_SCHEMAS = ROOT / "deploy" / "schemas"


def find_schemas() -> Path:
    """DPP_CRD_SCHEMAS overrides; then shared/schemas beside the checkout;
    then the copies in deploy/schemas (kept identical by a test)."""
    env = os.environ.get("DPP_CRD_SCHEMAS")
    if env:
        return Path(env)
    shared = shared_schemas()
    if shared is not None:
        return shared
    if (VENDORED_SCHEMAS / "istio-wasmplugin-v1alpha1.json").is_file():
        return VENDORED_SCHEMAS
    pytest.fail("CRD schemas not found: expected shared/schemas beside the checkout, deploy/schemas, or DPP_CRD_SCHEMAS")


_PARSED: dict[tuple[Path, float], dict] = {}


def load_one(path: Path) -> dict:
    """The one resource in a manifest file (a fresh copy: callers may mutate it)."""
    import copy

    key = (Path(path).resolve(), Path(path).stat().st_mtime)
    if key not in _PARSED:
        docs = [d for d in yaml.safe_load_all(Path(path).read_text()) if d is not None]
        assert len(docs) == 1, f"{path}: one resource per file (each file is validated as one document)"
        _PARSED[key] = docs[0]
    return copy.deepcopy(_PARSED[key])


def manifest_paths(root: Path = DEPLOY) -> list[Path]:
    import pin

    return pin.manifests(root)


def by_kind(root: Path = DEPLOY) -> dict[str, list[tuple[Path, dict]]]:
    out: dict[str, list[tuple[Path, dict]]] = {}
    for p in manifest_paths(root):
        doc = load_one(p)
        out.setdefault(doc["kind"], []).append((p, doc))
    return out


def manifests(root: Path = DEPLOY) -> list[tuple[Path, dict]]:
    return [(p, load_one(p)) for p in manifest_paths(root)]


def pick(kind: str, *, name: str | None = None, namespace: str | None = None, under: str | None = None,
         root: Path = DEPLOY) -> dict:
    """The one manifest of `kind` (and name / namespace / directory under
    deploy/) that the deliverables hold; fails unless there is exactly one."""
    found = [
        doc
        for p, doc in manifests(root)
        if doc["kind"] == kind
        and (name is None or doc["metadata"]["name"] == name)
        and (namespace is None or doc["metadata"].get("namespace") == namespace)
        and (under is None or p.relative_to(root).as_posix().startswith(under + "/"))
    ]
    assert len(found) == 1, f"expected one {kind} (name={name}, namespace={namespace}, under={under}), found {len(found)}"
    return found[0]


# The two Istio flavours of field encryption (docs/kubernetes.md).
FIELD_FLAVOURS = {"trafficextension": "istio/fields-trafficextension", "wasmplugin": "istio/fields-wasmplugin"}
ENVOY_DIR = ROOT / "envoy"


def fields_bootstrap_filters() -> dict[str, dict]:
    """The HTTP filters of envoy/dpp-guard-fields.yaml by name: the shipped
    hold filters every Kubernetes flavour must carry unchanged."""
    import re

    text = re.sub(r"\$\{[A-Z0-9_]+\}", "0", (ENVOY_DIR / "dpp-guard-fields.yaml").read_text())
    boot = yaml.safe_load(text)
    hcm = boot["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"]
    return {f["name"]: f for f in hcm["http_filters"]}


def hold_code(direction: str) -> str:
    """Lua source of envoy/dpp-guard-fields.yaml's request or response hold."""
    f = fields_bootstrap_filters()[f"dpp_guard_{direction}_hold"]
    return f["typed_config"]["default_source_code"]["inline_string"]
