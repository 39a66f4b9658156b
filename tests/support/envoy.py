"""Render the shipped Envoy configurations and run a real Envoy on them.

The configurations in envoy/ are the ones users copy. They hold `${NAME}`
placeholders (envsubst style) for ports, paths and certificates; tests fill
those in, and may replace the policy inside the ECDS file. Nothing else is
changed, so the tests exercise exactly what users run.
"""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time
import urllib.request
from pathlib import Path
from typing import Any, Mapping, Optional, Union

import yaml

from .paths import ENVOY_BIN, ENVOY_DIR, WASM

_PLACEHOLDER = re.compile(r"\$\{([A-Z0-9_]+)\}")


def render(template: Union[str, Path], values: Mapping[str, Any]) -> str:
    """Substitutes `${NAME}`; every placeholder must have a value."""
    text = Path(template).read_text() if isinstance(template, Path) else template
    missing = sorted({m for m in _PLACEHOLDER.findall(text) if m not in values})
    if missing:
        raise KeyError(f"no value for placeholders {missing} in {template}")
    return _PLACEHOLDER.sub(lambda m: str(values[m.group(1)]), text)


def policy_text(policy: Union[str, Mapping[str, Any]]) -> str:
    return policy if isinstance(policy, str) else json.dumps(policy, indent=1)


def write_ecds(template: Path, out: Path, values: Mapping[str, Any],
               policies: Optional[Mapping[str, Union[str, Mapping[str, Any]]]] = None) -> Path:
    """Renders an ECDS file; `policies` maps a filter name to the policy it gets."""
    doc = yaml.safe_load(render(template, values))
    for resource in doc["resources"]:
        if policies and resource["name"] in policies:
            cfg = resource["typed_config"]["config"]
            cfg["configuration"]["value"] = policy_text(policies[resource["name"]])
    out.write_text(yaml.safe_dump(doc, sort_keys=False))
    return out


class EnvoyError(RuntimeError):
    pass


class Envoy:
    """One Envoy process with its own admin port, log file and working directory."""

    def __init__(self, config: str, workdir: Path, env: Optional[Mapping[str, str]] = None,
                 name: str = "envoy", log_level: str = "info", concurrency: int = 1):
        self.name = name
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.config_path = self.workdir / f"{name}.yaml"
        self.config_path.write_text(config)
        self.log_path = self.workdir / f"{name}.log"
        self.admin_path = self.workdir / f"{name}.admin"
        self.env = dict(env or {})
        self.log_level = log_level
        self.concurrency = concurrency
        self.proc: Optional[subprocess.Popen] = None
        self._admin: Optional[str] = None

    # -- life cycle -------------------------------------------------------
    def start(self, timeout: float = 30.0) -> "Envoy":
        if not ENVOY_BIN.exists():
            raise EnvoyError(f"{ENVOY_BIN} missing: run `make venv`")
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), **self.env}
        self.admin_path.unlink(missing_ok=True)
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(
                [str(ENVOY_BIN), "-c", str(self.config_path),
                 "--admin-address-path", str(self.admin_path),
                 "--use-dynamic-base-id", "--concurrency", str(self.concurrency),
                 "--log-level", self.log_level, "--disable-hot-restart",
                 # Access-log files are flushed every 10 s by default; tests
                 # read them right after the requests.
                 "--file-flush-interval-msec", "100"],
                stdout=log, stderr=subprocess.STDOUT, env=env, cwd=self.workdir,
                start_new_session=True)
        self._wait_ready(timeout)
        return self

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise EnvoyError(f"{self.name} exited with {self.proc.returncode}:\n{self.log_tail()}")
            if self.admin_path.exists() and self.admin_path.read_text().strip():
                self._admin = "http://" + self.admin_path.read_text().strip()
                try:
                    if self.admin_get("/ready").strip() == "LIVE":
                        return
                except OSError:
                    pass
            time.sleep(0.05)
        self.stop()
        raise EnvoyError(f"{self.name} not ready after {timeout}s:\n{self.log_tail()}")

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        try:
            os.killpg(self.proc.pid, signal.SIGTERM)
            self.proc.wait(timeout=10)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.proc.wait(timeout=10)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    # -- observation --------------------------------------------------------
    def admin_get(self, path: str) -> str:
        with urllib.request.urlopen(self._admin + path, timeout=5) as r:
            return r.read().decode()

    def listener_port(self, name: str) -> int:
        listeners = json.loads(self.admin_get("/listeners?format=json"))
        for listener in listeners["listener_statuses"]:
            if listener["name"] == name:
                return listener["local_address"]["socket_address"]["port_value"]
        raise EnvoyError(f"no listener {name!r}")

    def stats(self) -> dict[str, int]:
        out = {}
        for line in self.admin_get("/stats").splitlines():
            key, _, value = line.partition(": ")
            if value.strip().lstrip("-").isdigit():
                out[key] = int(value)
        return out

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def log_tail(self, lines: int = 60) -> str:
        return "\n".join(self.log().splitlines()[-lines:])

    def plugin_lines(self) -> list[str]:
        """Lines the Wasm plugins logged (Envoy prefixes them with `wasm log`)."""
        return [l for l in self.log().splitlines() if "wasm log" in l]


def guard_values(**overrides: Any) -> dict[str, Any]:
    """Default placeholder values for the shipped configurations."""
    values = {"LISTEN_PORT": 0, "ADMIN_PORT": 0, "DPP_GUARD_WASM": WASM, "ENVOY_DIR": ENVOY_DIR,
              "ACCESS_LOG": "/dev/stdout"}
    values.update(overrides)
    return values
