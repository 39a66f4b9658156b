"""The PrometheusRule's alerts parse, fire on the events they are about and
name only event kinds dpp-guard really emits (judged by promtool)."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import yaml

from deploy_support import ROOT, by_kind, tool

DATA = Path(__file__).resolve().parent / "data"


def rule() -> dict:
    ((_, doc),) = by_kind()["PrometheusRule"]
    return doc


def write_rules(tmp_path: Path, groups: list) -> Path:
    shutil.copy(DATA / "alerts_test.yaml", tmp_path / "alerts_test.yaml")
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump({"groups": groups}, sort_keys=False))
    return tmp_path


def promtool(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([tool("promtool"), *args], cwd=cwd, capture_output=True, text=True)


def test_rules_pass_promtool_check(tmp_path):
    d = write_rules(tmp_path, rule()["spec"]["groups"])
    res = promtool("check", "rules", "rules.yaml", cwd=d)
    assert res.returncode == 0, res.stdout + res.stderr


def test_alerts_fire_as_specified(tmp_path):
    d = write_rules(tmp_path, rule()["spec"]["groups"])
    res = promtool("test", "rules", "alerts_test.yaml", cwd=d)
    assert res.returncode == 0, res.stdout + res.stderr


def test_promtool_refuses_a_broken_expression(tmp_path):
    groups = rule()["spec"]["groups"]
    groups[0]["rules"][0]["expr"] = "sum by (pod (increase(dpp_guard_events_total[5m]))"
    res = promtool("check", "rules", "rules.yaml", cwd=write_rules(tmp_path, groups))
    assert res.returncode != 0


def test_alert_unit_tests_catch_a_wrong_metric_name(tmp_path):
    groups = rule()["spec"]["groups"]
    groups[0]["rules"][0]["expr"] = groups[0]["rules"][0]["expr"].replace("policy_rejected", "policy_refused")
    res = promtool("test", "rules", "alerts_test.yaml", cwd=write_rules(tmp_path, groups))
    assert res.returncode != 0


def events_rs() -> str:
    return (ROOT / "core" / "src" / "events.rs").read_text()


def emitted_event_kinds() -> set[str]:
    """Kind names as core/src/events.rs spells them (a `match` returning the
    name, or a table of `Variant = "name", Severity, Category;` rows)."""
    src = events_rs()
    return set(re.findall(r'=>\s*"([a-z_]+)"', src[src.index("enum EventKind") :])) | set(
        re.findall(r'^\s*[A-Z][A-Za-z]+\s*=\s*"([a-z_]+)"\s*,', src, re.M)
    )


def severities() -> set[str]:
    src = events_rs()
    body = src[src.index("pub enum Severity") :]
    body = body[body.index("{") + 1 : body.index("}")]
    return {v.lower() for v in re.findall(r"^\s*([A-Z][A-Za-z]+),", body, re.M)}


def test_alerts_name_only_event_kinds_and_severities_dpp_guard_has():
    kinds, sevs = emitted_event_kinds(), severities()
    assert {"policy_loaded", "policy_rejected", "kill_switch_refusal"} <= kinds
    assert sevs == {"info", "warning", "high", "critical"}
    used_kinds, used_sevs = set(), set()
    for group in rule()["spec"]["groups"]:
        for r in group["rules"]:
            for m in re.findall(r"\bdpp_guard_events_([a-z_]+)", r["expr"]):
                if m.startswith("by_severity_"):
                    used_sevs.add(m.removeprefix("by_severity_"))
                else:
                    used_kinds.add(m)
    assert used_kinds and used_sevs, "alerts select no dpp-guard event metric"
    assert used_kinds <= kinds, f"alerts on unknown event kinds: {used_kinds - kinds}"
    assert used_sevs <= sevs, f"alerts on unknown severities: {used_sevs - sevs}"
