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
    groups[0]["rules"][0]["expr"] = groups[0]["rules"][0]["expr"].replace("update_rejected", "update_refused")
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


def plugin_metric_names() -> set[str]:
    """Counters the plugin defines (string constants `dpp_guard.x.y` in the
    Rust sources), as Prometheus shows them (`dpp_guard_x_y`)."""
    names = set()
    for src in [*(ROOT / "plugin" / "src").glob("*.rs"), *(ROOT / "core" / "src").rglob("*.rs")]:
        names |= {n.replace(".", "_") for n in re.findall(r'"(dpp_guard\.[a-z_.]+)"', src.read_text())}
    # A prefix (`concat!("dpp_guard.report_only.", $name)` in events.rs'
    # table) names one counter per event kind.
    prefixes = {n for n in names if n.endswith("_")}
    return (names - prefixes) | {p + k for p in prefixes for k in emitted_event_kinds()}


def alert_regex(alert: str) -> str:
    for group in rule()["spec"]["groups"]:
        for r in group["rules"]:
            if r.get("alert") == alert:
                (rx,) = re.findall(r'__name__=~"([^"]+)"', r["expr"])
                return rx
    raise KeyError(alert)


def alert_metric_selectors() -> tuple[set[str], set[str]]:
    """(metric names, __name__ regexes) of the dpp_guard metrics the alerts use."""
    names, regexes = set(), set()
    for group in rule()["spec"]["groups"]:
        for r in group["rules"]:
            regexes |= set(re.findall(r'__name__=~"([^"]+)"', r["expr"]))
            expr = re.sub(r'__name__=~"[^"]+"', "", r["expr"])
            names |= set(re.findall(r"\b(dpp_guard_[a-z_]+)", expr))
    return names, regexes


def test_alerts_name_only_metrics_dpp_guard_has():
    kinds, sevs = emitted_event_kinds(), severities()
    assert {"policy_loaded", "policy_rejected", "kill_switch_refusal"} <= kinds
    assert sevs == {"info", "warning", "high", "critical"}
    defined = plugin_metric_names()
    assert "dpp_guard_plaintext_upstream" in defined
    names, regexes = alert_metric_selectors()
    assert names, "alerts select no dpp-guard metric"
    for name in names:
        if name.startswith("dpp_guard_events_by_severity_"):
            assert name.removeprefix("dpp_guard_events_by_severity_") in sevs, name
        elif name.startswith("dpp_guard_events_"):
            assert name.removeprefix("dpp_guard_events_") in kinds, name
        else:
            assert name in defined, f"{name} is not a counter the plugin defines"
    for rx in regexes:
        if rx.startswith("envoy_"):
            continue  # Envoy's own stats: matched against a live Envoy in test_deploy_plugin_envoy.py
        matched = {n for n in defined if re.fullmatch(rx, n)}
        assert matched, f"{rx} matches no counter the plugin defines"


MONITORING_KINDS = {"canary_accessed", "rate_anomaly", "volume_anomaly", "unauthorized_burst"}


def alert_for_kind(kind: str) -> dict:
    (found,) = [
        r
        for g in rule()["spec"]["groups"]
        for r in g["rules"]
        if f"dpp_guard_events_{kind}[" in r.get("expr", "")
    ]
    return found


def test_every_monitoring_event_has_an_alert_unit_tests_and_a_runbook_entry():
    """Issue 14: one alert per new event kind, with promtool cases that fire
    and cases that must not, and a runbook entry the alert links to."""
    assert MONITORING_KINDS <= emitted_event_kinds()
    tests = yaml.safe_load((DATA / "alerts_test.yaml").read_text())["tests"]
    runbook = (ROOT / "docs" / "runbook.md").read_text()
    for kind in MONITORING_KINDS:
        alert = alert_for_kind(kind)
        name = alert["alert"]
        cases = [c for t in tests for c in t["alert_rule_test"] if c["alertname"] == name]
        assert any(c["exp_alerts"] for c in cases), f"{name}: no case where it fires"
        assert any(not c["exp_alerts"] for c in cases), f"{name}: no case where it must not fire"
        assert f"### `{kind}`" in runbook, f"docs/runbook.md lacks {kind}"
        assert f"docs/runbook.md#{kind}" in alert["annotations"]["description"]


def test_monitoring_alert_tests_catch_a_wrong_metric_name(tmp_path):
    for kind in MONITORING_KINDS:
        groups = rule()["spec"]["groups"]
        for g in groups:
            for r in g["rules"]:
                if f"dpp_guard_events_{kind}[" in r.get("expr", ""):
                    r["expr"] = r["expr"].replace(kind, kind + "s")
        res = promtool("test", "rules", "alerts_test.yaml", cwd=write_rules(tmp_path, groups))
        assert res.returncode != 0, kind
