"""Fixtures for end-to-end tests against a real Envoy.

Every process a test starts is stopped at teardown, also when the test fails,
and a failing test's report carries the log of every Envoy it started.
"""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from support.envoy import Envoy  # noqa: E402
from support.paths import WASM  # noqa: E402
from support.pki import TestPki  # noqa: E402
from support.reports import ENVOYS_KEY  # noqa: E402
from support.stack import GuardStack  # noqa: E402



@pytest.fixture(scope="session")
def wasm() -> Path:
    if not WASM.exists():
        pytest.fail(f"{WASM} missing: run `make build` (make test does)")
    return WASM


@pytest.fixture(scope="session")
def pki(tmp_path_factory) -> TestPki:
    return TestPki(tmp_path_factory.mktemp("pki"))


@pytest.fixture
def envoys(request) -> list[Envoy]:
    """Envoys registered here are stopped at teardown and their logs attached to failures."""
    started: list[Envoy] = []
    request.node.stash[ENVOYS_KEY] = started
    yield started
    for e in started:
        e.stop()


@pytest.fixture
def guard_stack(wasm, pki, tmp_path, envoys):
    """Factory: guard_stack(policy=..., responder=..., env=...) -> a started GuardStack."""
    stacks: list[GuardStack] = []

    def make(**kw) -> GuardStack:
        stack = GuardStack(pki, workdir=tmp_path / f"stack{len(stacks)}", **kw)
        stacks.append(stack)
        try:
            stack.start()
        finally:
            if stack.envoy is not None:
                envoys.append(stack.envoy)
        return stack

    yield make
    for s in stacks:
        s.stop()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if report.failed:
        for e in item.stash.get(ENVOYS_KEY, []):
            report.sections.append((f"{e.name} log ({e.log_path})", e.log_tail(120)))
