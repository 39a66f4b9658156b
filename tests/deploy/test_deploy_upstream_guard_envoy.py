"""The upstream guard's EnvoyFilter, run in a real Envoy 1.40.

Istio delivers the guard's config over ECDS (ADS) after istio-agent has
replaced the oci:// code by the fetched local file. Here a file-based ECDS
source stands in for ADS and the local build of dpp_guard.wasm for the
fetched module; everything else (the router patch, the Wasm config, the
policy) is taken from deploy/istio/upstream-guard-envoyfilter.yaml as is.

What a user relies on: the shipped config loads as an upstream HTTP filter
and refuses a plaintext upstream before sending anything; and when the config is missing (module not fetched yet, fetch failed) or
rejected (bad policy), requests are refused with 500 and never reach the
upstream (fail closed).
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

import yaml

from deploy_support import WASM, pick
from envoy_run import envoy, get, poll, prometheus, static_bootstrap, stats

ECDS_TYPE = "type.googleapis.com/envoy.config.core.v3.TypedExtensionConfig"


def guard_patches() -> tuple[dict, dict]:
    ef = pick("EnvoyFilter", name="dpp-upstream-guard")
    patches = {p["applyTo"]: p for p in ef["spec"]["configPatches"]}
    return patches["EXTENSION_CONFIG"]["patch"]["value"], patches["HTTP_FILTER"]["patch"]["value"]


def bootstrap(router_value: dict, ecds_file: Path, upstream_port: int) -> dict:
    router = copy.deepcopy(router_value["typed_config"])
    source = router["upstream_http_filters"][0]["config_discovery"]["config_source"]
    source.pop("ads")
    source["path_config_source"] = {"path": str(ecds_file)}
    return static_bootstrap([{"name": router_value["name"], "typed_config": router}], "up", upstream_port, stat_prefix="guard")


def ecds(ext_value: dict | None) -> dict:
    if ext_value is None:
        return {"resources": []}
    typed = copy.deepcopy(ext_value["typed_config"])
    # What istio-agent does after fetching and verifying the OCI image.
    typed["config"]["vm_config"]["code"] = {"local": {"filename": str(WASM)}}
    return {"resources": [{"@type": ECDS_TYPE, "name": ext_value["name"], "typed_config": typed}]}


def run_case(envoy_bin, tmp_path, upstream, ext_value, requests: int = 1):
    ext, router = guard_patches()
    ecds_file = tmp_path / "ecds.yaml"
    ecds_file.write_text(yaml.safe_dump(ecds(ext_value)))
    with envoy(envoy_bin, tmp_path, bootstrap(router, ecds_file, upstream.server_address[1])) as (admin, listener):
        prefix = f"extension_config_discovery.upstream_http_filter.{ext['name']}."
        poll(lambda: stats(admin).get(prefix + "update_attempt", "0") != "0", "ECDS update")
        replies = [get(listener) for _ in range(requests)]
        return stats(admin), prefix, replies, prometheus(admin), (tmp_path / "envoy.log")


def test_shipped_guard_refuses_a_plaintext_upstream_before_sending(envoy_bin, tmp_path, upstream):
    ext, _ = guard_patches()
    st, prefix, replies, prom, log = run_case(envoy_bin, tmp_path, upstream, ext, requests=2)
    assert st[prefix + "config_reload"] == "1", log.read_text()[-3000:]
    assert st[prefix + "update_rejected"] == "0", log.read_text()[-3000:]
    for status, body in replies:
        assert status == 502, body
        assert json.loads(body)["error"] == "upstream_not_tls"
    assert upstream.hits == 0, "a request reached the plaintext upstream"
    # The name the PrometheusRule alerts on, as Envoy exports it.
    assert prom.get("dpp_guard_upstream_refused_new_connection{}") == 2, {k: v for k, v in prom.items() if "dpp" in k}


def test_missing_guard_config_refuses_requests(envoy_bin, tmp_path, upstream):
    st, prefix, replies, _, _ = run_case(envoy_bin, tmp_path, upstream, None)
    assert st[prefix + "config_reload"] == "0"
    assert replies[0][0] == 500
    assert upstream.hits == 0, "a request went upstream without the guard"


def test_rejected_guard_config_refuses_requests(envoy_bin, tmp_path, upstream):
    ext, _ = guard_patches()
    bad = copy.deepcopy(ext)
    bad["typed_config"]["config"]["configuration"]["value"] = '{"version":1,"routes":[{"name":"x","kill_swtich":true}]}'
    st, prefix, replies, _, log = run_case(envoy_bin, tmp_path, upstream, bad)
    assert st[prefix + "update_rejected"] == "1"
    assert replies[0][0] == 500
    assert upstream.hits == 0, "a request went upstream without the guard"
    assert "kill_swtich" in log.read_text(), "the rejected field is named in the proxy log"
