"""dpp_guard as the WasmPlugin and the EnvoyExtensionPolicy configure it,
run in a real Envoy 1.40.

No control plane runs here, so this test does the translation istiod (or
Envoy Gateway) does, field by field, from the shipped manifest:
pluginName/rootID -> root_id, pluginConfig/config -> the JSON
`configuration`, HOST env / hostKeys -> host_env_keys,
failStrategy/failOpen -> fail_open; the module is the local build (what
the agent hands Envoy after fetching the image) and ECDS comes from a file
instead of ADS. What a user relies on: the shipped policy loads, its
kill-switch route is refused before anything reaches the service, and
traffic outside the policy flows.
"""

from __future__ import annotations

import json
import re

import pytest
import yaml

from deploy_support import WASM, pick
from envoy_run import envoy, get, poll, prometheus, static_bootstrap, stats
from test_deploy_alerts import alert_regex

WASM_TYPE = "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm"
ECDS_TYPE = "type.googleapis.com/envoy.config.core.v3.TypedExtensionConfig"


def wasm_config(name: str, root_id: str, policy: dict, host_keys: list[str], fail_open: bool) -> dict:
    return {
        "@type": WASM_TYPE,
        "config": {
            "name": name,
            "root_id": root_id,
            "vm_config": {
                "vm_id": name,
                "runtime": "envoy.wasm.runtime.v8",
                "code": {"local": {"filename": str(WASM)}},
                "environment_variables": {"host_env_keys": host_keys},
            },
            "configuration": {"@type": "type.googleapis.com/google.protobuf.StringValue", "value": json.dumps(policy)},
            "fail_open": fail_open,
        },
    }


def from_wasmplugin() -> tuple[str, dict]:
    wp = pick("WasmPlugin", name="dpp-guard")
    spec, meta = wp["spec"], wp["metadata"]
    name = f"{meta['namespace']}.{meta['name']}"
    host = [e["name"] for e in spec["vmConfig"]["env"] if e.get("valueFrom") == "HOST"]
    return name, wasm_config(name, spec["pluginName"], spec["pluginConfig"], host, spec["failStrategy"] == "FAIL_OPEN")


def from_envoyextensionpolicy() -> tuple[str, dict]:
    eep = pick("EnvoyExtensionPolicy")
    (w,) = eep["spec"]["wasm"]
    name = f"envoyextensionpolicy/{eep['metadata']['namespace']}/{eep['metadata']['name']}/wasm/0"
    return name, wasm_config(name, w["rootID"], w["config"], w["env"]["hostKeys"], w.get("failOpen", False))


def bootstrap(filter_name: str, ecds_file, upstream_port: int, cluster: str = "inbound|8080||") -> dict:
    # The default cluster is named like Istio's inbound cluster for the app's
    # port: the sidecar's plaintext hop to the app in the same pod.
    filters = [
        {
            "name": filter_name,
            "config_discovery": {
                "config_source": {"path_config_source": {"path": str(ecds_file)}, "resource_api_version": "V3"},
                "type_urls": [WASM_TYPE],
            },
        },
        {"name": "envoy.filters.http.router", "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"}},
    ]
    return static_bootstrap(filters, cluster, upstream_port, stat_prefix="guarded")


def kill_switch_path(policy: dict) -> str:
    for route in policy["routes"]:
        if route.get("kill_switch") and "prefix" in route.get("match", {}).get("path", {}):
            return route["match"]["path"]["prefix"] + "report"
    pytest.fail("the shipped policy has no kill-switch route with a path prefix")


@pytest.mark.parametrize("source", ["WasmPlugin", "EnvoyExtensionPolicy"])
def test_shipped_policy_runs_in_envoy_as_the_mesh_delivers_it(envoy_bin, tmp_path, upstream, source):
    name, typed = from_wasmplugin() if source == "WasmPlugin" else from_envoyextensionpolicy()
    ecds_file = tmp_path / "ecds.yaml"
    ecds_file.write_text(yaml.safe_dump({"resources": [{"@type": ECDS_TYPE, "name": name, "typed_config": typed}]}))
    policy = json.loads(typed["config"]["configuration"]["value"])
    with envoy(envoy_bin, tmp_path, bootstrap(name, ecds_file, upstream.server_address[1])) as (admin, listener):
        prefix = f"extension_config_discovery.http_filter.{name}."
        poll(lambda: stats(admin).get(prefix + "update_attempt", "0") != "0", "ECDS update")
        st = stats(admin)
        log = (tmp_path / "envoy.log").read_text()
        assert st[prefix + "config_reload"] == "1", log[-3000:]
        assert st[prefix + "update_rejected"] == "0", log[-3000:]

        status, body = get(listener, kill_switch_path(policy))
        assert status >= 400, body
        assert "error" in json.loads(body), body
        assert upstream.hits == 0, "a request on a kill-switch route reached the service"

        status, body = get(listener, "/healthz")
        assert status == 200, body
        assert upstream.hits == 1

        prom = prometheus(admin)
        # Counted under the names the alerts use.
        assert prom.get("dpp_guard_events_kill_switch_refusal{}") == 1, prom
        # Istio: the inbound loopback hop is exempt by the shipped policy, no
        # plaintext-upstream alarm for every inbound request. Envoy Gateway's
        # policy exempts nothing, so a plaintext backend is reported.
        expected = 0 if source == "WasmPlugin" else 1
        assert prom.get("dpp_guard_plaintext_upstream{}", 0) == expected


def test_plaintext_to_any_other_cluster_raises_the_alerted_counter(envoy_bin, tmp_path, upstream):
    # The exemption covers the inbound hop only: the same plaintext upstream
    # under an outbound cluster name is reported (guard missing or bypassed).
    name, typed = from_wasmplugin()
    ecds_file = tmp_path / "ecds.yaml"
    ecds_file.write_text(yaml.safe_dump({"resources": [{"@type": ECDS_TYPE, "name": name, "typed_config": typed}]}))
    boot = bootstrap(name, ecds_file, upstream.server_address[1], cluster="outbound|80||billing.billing.svc.cluster.local")
    with envoy(envoy_bin, tmp_path, boot) as (admin, listener):
        prefix = f"extension_config_discovery.http_filter.{name}."
        poll(lambda: stats(admin).get(prefix + "update_attempt", "0") != "0", "ECDS update")
        get(listener, "/healthz")
        prom = prometheus(admin)
        assert prom.get("dpp_guard_plaintext_upstream{}") == 1, {k: v for k, v in prom.items() if "dpp" in k}
        assert prom.get("dpp_guard_events_plaintext_upstream_observed{}") == 1


@pytest.mark.parametrize("missing", ["log key", "keyring"])
def test_a_proxy_without_its_keys_refuses_traffic(envoy_bin, tmp_path, upstream, missing):
    # The Secret did not reach the proxy (wrong key name, istio-proxy
    # override left out): the shipped policy names both variables and
    # requires the log key, so the plugin does not start and the listener
    # refuses everything instead of running without its keys.
    name, typed = from_wasmplugin()
    policy = json.loads(typed["config"]["configuration"]["value"])
    assert policy["logging"]["require_log_key"] is True
    var, field = {
        "log key": (policy["logging"]["log_key_env"], "logging.log_key_env"),
        "keyring": (policy["keys"]["env"], "keys.env"),
    }[missing]
    ecds_file = tmp_path / "ecds.yaml"
    ecds_file.write_text(yaml.safe_dump({"resources": [{"@type": ECDS_TYPE, "name": name, "typed_config": typed}]}))
    boot = bootstrap(name, ecds_file, upstream.server_address[1])
    with envoy(envoy_bin, tmp_path, boot, drop_env=(var,)) as (admin, listener):
        prefix = f"extension_config_discovery.http_filter.{name}."
        poll(lambda: stats(admin).get(prefix + "update_attempt", "0") != "0", "ECDS update")
        assert stats(admin)[prefix + "update_rejected"] == "1"
        status, _ = get(listener, "/healthz")
        assert status == 500
        assert upstream.hits == 0
        assert field in (tmp_path / "envoy.log").read_text()
        # What DppGuardPolicyRejected alerts on (the refused plugin exports
        # no dpp_guard_* counter of its own).
        rx = alert_regex("DppGuardPolicyRejected")
        hits = {k: v for k, v in prometheus(admin).items() if re.fullmatch(rx, k.split("{", 1)[0])}
        assert hits and all(v >= 1 for v in hits.values()), hits
