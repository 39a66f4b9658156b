"""The manifests under deploy/ are what `kubectl apply` would accept and
what dpp-guard needs: CRD schemas (strict: unknown fields refused), CRD CEL
rules, fail-closed settings, keys only from the proxy environment, valid
policies, and the hold filters in the order field rules need."""

from __future__ import annotations

import copy
import json
import re
import subprocess
from pathlib import Path

import pytest
import yaml

import k8s_cel
import k8s_schema
from deploy_support import (
    DEPLOY,
    FIELD_FLAVOURS,
    ROOT,
    by_kind,
    hold_code,
    load_one,
    manifest_paths,
    manifests,
    pick,
)

CHECK_JSONSCHEMA = ROOT / ".venv" / "bin" / "check-jsonschema"
KUBERNETES_VALIDATE = ROOT / ".venv" / "bin" / "kubernetes-validate"
# Built-in kinds: validated strictly against the Kubernetes OpenAPI schema
# that kubernetes-validate ships (offline).
BUILTIN_KINDS = {"Deployment", "Secret"}
CRD_KINDS = set(k8s_schema.CRDS)
# PrometheusRule: judged by promtool (test_deploy_alerts.py).
KNOWN_KINDS = CRD_KINDS | BUILTIN_KINDS | {"PrometheusRule"}
KEY_VARS = ["DPP_GUARD_KEYS", "DPP_GUARD_LOG_KEY"]
HEX64 = re.compile(r"^[a-f0-9]{64}$")
WASM_TYPE = "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm"
LUA_TYPE = "type.googleapis.com/envoy.extensions.filters.http.lua.v3.Lua"


def schema_errors(schemas: Path, doc: dict) -> list[str]:
    return k8s_schema.errors(schemas, doc)


def cel_violations(schemas: Path, doc: dict) -> list[str]:
    schema = json.loads((schemas / k8s_schema.CRDS[doc["kind"]][1]).read_text())
    return [str(v) for v in k8s_cel.violations(schema, doc)]


def check_jsonschema(schema: Path, *instances: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(CHECK_JSONSCHEMA), "--schemafile", str(schema), *map(str, instances)], capture_output=True, text=True
    )


def write(tmp_path: Path, name: str, doc: dict) -> Path:
    p = tmp_path / name
    p.write_text(yaml.safe_dump(doc, sort_keys=False))
    return p


def rel(p: Path) -> str:
    return p.relative_to(DEPLOY).as_posix()


def crd_manifests() -> list[Path]:
    return [p for p in manifest_paths() if load_one(p)["kind"] in CRD_KINDS]


# --- coverage ---------------------------------------------------------------


def test_every_manifest_is_a_kind_the_checks_cover():
    kinds = {rel(p): load_one(p)["kind"] for p in manifest_paths()}
    assert kinds, "no manifests found under deploy/"
    unknown = {p: k for p, k in kinds.items() if k not in KNOWN_KINDS}
    assert not unknown, f"manifests of kinds no test validates: {unknown}"
    assert KNOWN_KINDS <= set(kinds.values()), "a deliverable manifest kind is missing"


def test_every_crd_kind_has_a_vendored_schema():
    from deploy_support import VENDORED_SCHEMAS

    for kind, (_, name) in k8s_schema.CRDS.items():
        assert (VENDORED_SCHEMAS / name).is_file(), f"{kind}: deploy/schemas/{name} missing"


# --- CRD schemas (strict) and CEL rules -------------------------------------


@pytest.mark.parametrize("path", crd_manifests(), ids=rel)
def test_crd_manifest_passes_its_strict_schema(schemas, path):
    assert schema_errors(schemas, load_one(path)) == []


@pytest.mark.parametrize("path", crd_manifests(), ids=rel)
def test_crd_manifest_passes_the_crd_cel_rules(schemas, path):
    assert cel_violations(schemas, load_one(path)) == []


def test_pinned_copies_from_make_oci_pass_schema_and_cel(schemas, make_oci):
    rendered = make_oci / "deploy"
    checked = 0
    for path in manifest_paths(rendered):
        doc = load_one(path)
        if doc["kind"] in CRD_KINDS:
            assert schema_errors(schemas, doc) == [], path
            assert cel_violations(schemas, doc) == [], path
            checked += 1
    assert checked == len(crd_manifests())


def test_strict_schema_agrees_with_check_jsonschema_where_the_crd_is_already_strict(schemas, tmp_path):
    """WasmPlugin's and EnvoyExtensionPolicy's schemas spell out
    additionalProperties: false; the independent check-jsonschema CLI on the
    unmodified schema must accept what the strict validator accepts and
    refuse an unknown field too."""
    for kind in ("WasmPlugin", "EnvoyExtensionPolicy"):
        schema = schemas / k8s_schema.CRDS[kind][1]
        files = [p for p in crd_manifests() if load_one(p)["kind"] == kind]
        res = check_jsonschema(schema, *files)
        assert res.returncode == 0, res.stdout + res.stderr
    doc = copy.deepcopy(pick("WasmPlugin", name="dpp-guard"))
    doc["spec"]["vmConfig"]["envs"] = []
    res = check_jsonschema(schemas / k8s_schema.CRDS["WasmPlugin"][1], write(tmp_path, "wp.yaml", doc))
    assert res.returncode != 0
    assert any("envs" in e for e in schema_errors(schemas, doc))


def kubernetes_validate(*paths: Path) -> subprocess.CompletedProcess:
    return subprocess.run([str(KUBERNETES_VALIDATE), "--strict", *map(str, paths)], capture_output=True, text=True)


def builtin_manifests() -> list[Path]:
    return [p for p in manifest_paths() if load_one(p)["kind"] in BUILTIN_KINDS]


def test_builtin_manifests_pass_kubernetes_validate():
    paths = builtin_manifests()
    assert {load_one(p)["kind"] for p in paths} == BUILTIN_KINDS
    res = kubernetes_validate(*paths)
    out = res.stdout + res.stderr
    assert res.returncode == 0, out
    for p in paths:
        assert re.search(rf"{re.escape(str(p))} passed", out), out


def test_kubernetes_validate_refuses_a_misspelt_secret_ref(tmp_path):
    doc = copy.deepcopy(pick("Deployment", name="orders-api"))
    proxy = [c for c in doc["spec"]["template"]["spec"]["containers"] if c["name"] == "istio-proxy"][0]
    ref = proxy["env"][0]["valueFrom"].pop("secretKeyRef")
    proxy["env"][0]["valueFrom"]["secretRef"] = ref
    res = kubernetes_validate(write(tmp_path, "workload.yaml", doc))
    assert res.returncode != 0, res.stdout + res.stderr


# Negative cases: each broken copy must be refused by the check that guards
# against it: the strict schema (enums, patterns, unknown fields, repeated
# list-map keys) or CEL (the cross-field rules).


def case_doc(kind: str, name: str) -> dict:
    """The manifest a broken-copy case starts from; a name shipped in both
    namespaces is taken from orders."""
    found = [d for _, d in manifests() if d["kind"] == kind and d["metadata"]["name"] == name]
    if len(found) > 1:
        found = [d for d in found if d["metadata"].get("namespace") == "orders"]
    assert len(found) == 1, (kind, name)
    return found[0]


def broken(kind: str, name: str, mutate) -> dict:
    doc = copy.deepcopy(case_doc(kind, name))
    mutate(doc)
    return doc


def _set(path: str, value):
    def mutate(d):
        *parents, last = path.split(".")
        node = d
        for key in parents:
            node = node[int(key)] if key.isdigit() else node[key]
        if last.isdigit():
            node[int(last)] = value
        else:
            node[last] = value

    return mutate


def _dup_env(d):
    env = d["spec"]["wasm"]["vmConfig"]["env"]
    env.append(copy.deepcopy(env[0]))


SCHEMA_BREAKS = {
    "wasmplugin-wrong-failstrategy-enum": ("WasmPlugin", "dpp-guard", _set("spec.failStrategy", "FAIL_SOMETIMES"), "failStrategy"),
    "wasmplugin-wrong-phase-enum": ("WasmPlugin", "dpp-guard", _set("spec.phase", "AUTHORIZATION"), "phase"),
    "wasmplugin-unknown-field": ("WasmPlugin", "dpp-guard", _set("spec.vmConfig.envs", []), "envs"),
    "wasmplugin-bad-sha256": ("WasmPlugin", "dpp-guard", _set("spec.sha256", "sha256:" + "a" * 64), "sha256"),
    "wasmplugin-metadata-unknown-field": ("WasmPlugin", "dpp-guard", _set("metadata.label", {"a": "b"}), "label"),
    "wasmplugin-wrong-api-version": ("WasmPlugin", "dpp-guard", _set("apiVersion", "extensions.istio.io/v1"), "apiVersion"),
    "te-unknown-field-in-wasm": ("TrafficExtension", "dpp-guard-egress", _set("spec.wasm.vmconfig", {}), "vmconfig"),
    "te-wrong-phase-enum": ("TrafficExtension", "dpp-guard-egress", _set("spec.phase", "STAT"), "phase"),
    "te-wrong-mode-enum": ("TrafficExtension", "dpp-guard-hold-request", _set("spec.match.0.mode", "OUTBOUND"), "mode"),
    "te-priority-not-int": ("TrafficExtension", "dpp-guard-hold-request", _set("spec.priority", "990"), "priority"),
    "te-lua-unknown-field": ("TrafficExtension", "dpp-guard-hold-response", _set("spec.lua.code", "x"), "code"),
    "te-lua-over-64k": ("TrafficExtension", "dpp-guard-hold-response", _set("spec.lua.inlineCode", "-" * 65537), "inlineCode"),
    "te-duplicate-env": ("TrafficExtension", "dpp-guard-egress", _dup_env, "duplicate entry"),
    "envoyfilter-unknown-field": ("EnvoyFilter", "dpp-upstream-guard", _set("spec.configPatches.0.patch.operaton", "ADD"), "operaton"),
    "envoyfilter-wrong-applyto": ("EnvoyFilter", "dpp-guard-holds", _set("spec.configPatches.0.applyTo", "HTTP_FILTERS"), "applyTo"),
    "envoyfilter-wrong-operation": ("EnvoyFilter", "dpp-guard-holds", _set("spec.configPatches.1.patch.operation", "INSERT_AFTER_ROUTER"), "operation"),
    "envoyfilter-wrong-context": ("EnvoyFilter", "dpp-guard-holds", _set("spec.configPatches.0.match.context", "OUTBOUND"), "context"),
    "envoyfilter-misspelt-subfilter": (
        "EnvoyFilter", "dpp-guard-holds",
        lambda d: d["spec"]["configPatches"][1]["match"]["listener"]["filterChain"]["filter"].update(sub_filter={"name": "x"}),
        "sub_filter",
    ),
    "eep-unknown-field": ("EnvoyExtensionPolicy", "dpp-guard", _set("spec.wasm.0.failClosed", True), "failClosed"),
    "eep-wrong-code-type-enum": ("EnvoyExtensionPolicy", "dpp-guard", _set("spec.wasm.0.code.type", "OCI"), "type"),
    "epp-unknown-field": ("EnvoyPatchPolicy", "dpp-guard", _set("spec.jsonPatches.1.operation.jsonpath", "x"), "jsonpath"),
    "epp-wrong-op": ("EnvoyPatchPolicy", "dpp-guard", _set("spec.jsonPatches.1.operation.op", "insert"), "op"),
    "epp-wrong-resource-type": (
        "EnvoyPatchPolicy", "dpp-guard",
        _set("spec.jsonPatches.1.type", "type.googleapis.com/envoy.config.listener.v3.HttpConnectionManager"), "type",
    ),
    "epp-no-target": ("EnvoyPatchPolicy", "dpp-guard", lambda d: d["spec"].pop("targetRef"), "targetRef"),
    "envoyproxy-misspelt-secret-ref": (
        "EnvoyProxy", "dpp-guard-proxy",
        lambda d: d["spec"]["provider"]["kubernetes"]["envoyDeployment"]["container"]["env"][0].update(
            valueFrom={"secretRef": {"name": "dpp-guard-keys", "key": "DPP_GUARD_KEYS"}}),
        "secretRef",
    ),
    "envoyproxy-unknown-field": ("EnvoyProxy", "dpp-guard-proxy", _set("spec.provider.kubernetes.envoyDeploy", {}), "envoyDeploy"),
    "envoyproxy-wrong-provider-enum": ("EnvoyProxy", "dpp-guard-proxy", _set("spec.provider.type", "Kube"), "type"),
}


@pytest.mark.parametrize("case", sorted(SCHEMA_BREAKS))
def test_strict_schema_refuses_broken_manifest(schemas, case):
    kind, name, mutate, needle = SCHEMA_BREAKS[case]
    assert schema_errors(schemas, case_doc(kind, name)) == []
    found = schema_errors(schemas, broken(kind, name, mutate))
    assert any(needle in e for e in found), found


def _host_env_with_value(path: str):
    def mutate(d):
        node = d["spec"]
        for key in path.split("."):
            node = node[key]
        node["env"][0]["value"] = "inline-secret"

    return mutate


def _targetrefs(d):
    d["spec"]["targetRefs"] = [{"group": "gateway.networking.k8s.io", "kind": "Gateway", "name": "edge"}]


def _te_wasm_and_lua(d):
    d["spec"]["lua"] = {"inlineCode": "function envoy_on_request(h) end"}


CEL_BREAKS = {
    "wasmplugin-host-env-with-value": ("WasmPlugin", "dpp-guard", _host_env_with_value("vmConfig"), "value may only be set when valueFrom is INLINE"),
    "wasmplugin-selector-and-targetrefs": ("WasmPlugin", "dpp-guard", _targetrefs, "only one of targetRefs or selector"),
    "wasmplugin-url-scheme": ("WasmPlugin", "dpp-guard", _set("spec.url", "ftp://registry.example.com/x"), "url must have schema"),
    "wasmplugin-wildcard-label": (
        "WasmPlugin", "dpp-guard", lambda d: d["spec"]["selector"]["matchLabels"].update({"app": "orders-*"}), "wildcard not allowed",
    ),
    "te-host-env-with-value": ("TrafficExtension", "dpp-guard-egress", _host_env_with_value("wasm.vmConfig"), "value may only be set when valueFrom is INLINE"),
    "te-selector-and-targetrefs": ("TrafficExtension", "dpp-guard-hold-request", _targetrefs, "only one of targetRefs or selector"),
    "te-url-scheme": ("TrafficExtension", "dpp-guard-ingress", _set("spec.wasm.url", "ftp://registry.example.com/x"), "url must have schema"),
    "te-wildcard-label": (
        "TrafficExtension", "dpp-guard-hold-response",
        lambda d: d["spec"]["selector"]["matchLabels"].update({"dpp-guard/protected": "tr*e"}), "wildcard not allowed",
    ),
    "envoyfilter-wildcard-label": (
        "EnvoyFilter", "dpp-guard-holds",
        lambda d: d["spec"]["workloadSelector"]["labels"].update({"dpp-guard/protected": "tr*e"}), "wildcard is not supported",
    ),
    "envoyfilter-selector-and-targetrefs": (
        "EnvoyFilter", "dpp-upstream-guard",
        lambda d: d["spec"].update(targetRefs=[{"kind": "Service", "name": "orders-api"}]), "only one of targetRefs or workloadSelector",
    ),
    "envoyproxy-image-and-repository": (
        "EnvoyProxy", "dpp-guard-proxy",
        lambda d: d["spec"]["provider"]["kubernetes"]["envoyDeployment"]["container"].update(
            image="docker.io/envoyproxy/envoy:distroless-v1.40.0", imageRepository="docker.io/envoyproxy/envoy"),
        "Either image or imageRepository can be set",
    ),
    "eep-targetref-kind": ("EnvoyExtensionPolicy", "dpp-guard", lambda d: d["spec"]["targetRefs"][0].update(kind="Service"), "can only have a targetRefs[*].kind"),
    "eep-no-target": ("EnvoyExtensionPolicy", "dpp-guard", lambda d: d["spec"].pop("targetRefs"), "either targetRef or targetRefs"),
    "eep-image-type-without-image": (
        "EnvoyExtensionPolicy", "dpp-guard", _set("spec.wasm.0.code.type", "HTTP"), "If type is HTTP, http field needs to be set",
    ),
}


@pytest.mark.parametrize("case", sorted(CEL_BREAKS))
def test_cel_refuses_broken_manifest(schemas, case):
    kind, name, mutate, message = CEL_BREAKS[case]
    doc = broken(kind, name, mutate)
    # The schema alone lets these through: that is why CEL is checked.
    assert schema_errors(schemas, doc) == []
    found = cel_violations(schemas, doc)
    assert any(message in v for v in found), found


def test_a_trafficextension_with_both_wasm_and_lua_is_refused(schemas):
    doc = broken("TrafficExtension", "dpp-guard-egress", _te_wasm_and_lua)
    assert any("exactly one of wasm or lua" in v for v in cel_violations(schemas, doc))
    assert schema_errors(schemas, doc), "the schema's oneOf refuses it too"
    doc = broken("TrafficExtension", "dpp-guard-hold-request", lambda d: d["spec"].pop("lua"))
    assert any("exactly one of wasm or lua" in v for v in cel_violations(schemas, doc))


# --- dpp-guard's own requirements --------------------------------------------


def wasm_specs() -> list[tuple[str, dict]]:
    """(where, the WasmPlugin-shaped spec) of every dpp_guard plugin resource."""
    out = []
    for p, doc in manifests():
        if doc["kind"] == "WasmPlugin":
            out.append((rel(p), doc["spec"]))
        elif doc["kind"] == "TrafficExtension" and "wasm" in doc["spec"]:
            out.append((rel(p), doc["spec"]["wasm"]))
    return out


@pytest.mark.parametrize("where, spec", wasm_specs(), ids=[w for w, _ in wasm_specs()])
def test_every_istio_plugin_is_pinned_fail_closed_and_takes_keys_from_host(where, spec):
    assert spec["url"] == pick("WasmPlugin", name="dpp-guard")["spec"]["url"], "one image everywhere"
    assert spec["url"].startswith("oci://")
    assert HEX64.match(spec["sha256"])
    assert spec["failStrategy"] == "FAIL_CLOSE"
    assert spec["pluginName"] == "dpp_guard"
    assert spec["vmConfig"]["env"] == [{"name": n, "valueFrom": "HOST"} for n in KEY_VARS]
    assert env_names_the_policy_reads(spec["pluginConfig"]) <= set(KEY_VARS)


def test_eep_is_pinned_fail_closed_and_takes_keys_from_host():
    (wasm,) = pick("EnvoyExtensionPolicy")["spec"]["wasm"]
    assert wasm["rootID"] == "dpp_guard"
    assert wasm["failOpen"] is False
    assert wasm["code"]["type"] == "Image"
    assert not wasm["code"]["image"]["url"].startswith("oci://"), "Envoy Gateway takes registry/repo:tag"
    # The same image as the WasmPlugin's.
    assert "oci://" + wasm["code"]["image"]["url"] == pick("WasmPlugin", name="dpp-guard")["spec"]["url"]
    assert HEX64.match(wasm["code"]["image"]["sha256"])
    assert wasm["env"]["hostKeys"] == KEY_VARS


def _secret_env(container: dict) -> dict[str, tuple[str, str]]:
    return {
        e["name"]: (e["valueFrom"]["secretKeyRef"]["name"], e["valueFrom"]["secretKeyRef"]["key"])
        for e in container.get("env", [])
        if "secretKeyRef" in e.get("valueFrom", {})
    }


def _secrets() -> dict[tuple[str, str], dict]:
    return {(d["metadata"]["namespace"], d["metadata"]["name"]): d for _, d in by_kind()["Secret"]}


def _assert_env_from_secret(env: dict, namespace: str):
    secrets = _secrets()
    assert set(env) == set(KEY_VARS), env
    for var, (secret, key) in env.items():
        assert (namespace, secret) in secrets, f"{var}: Secret {namespace}/{secret} not shipped"
        assert key in secrets[(namespace, secret)]["stringData"], f"{var}: key {key} not in the Secret"


def _selected_pods(namespace: str, labels: dict) -> list[dict]:
    return [
        d["spec"]["template"]
        for _, d in by_kind()["Deployment"]
        if d["metadata"]["namespace"] == namespace
        and labels.items() <= d["spec"]["template"]["metadata"]["labels"].items()
    ]


def test_every_istio_resource_selects_a_shipped_workload_whose_sidecar_has_the_keys():
    for p, doc in manifests():
        if doc["kind"] not in {"WasmPlugin", "TrafficExtension", "EnvoyFilter"}:
            continue
        spec = doc["spec"]
        labels = spec["workloadSelector"]["labels"] if doc["kind"] == "EnvoyFilter" else spec["selector"]["matchLabels"]
        pods = _selected_pods(doc["metadata"]["namespace"], labels)
        assert len(pods) == 1, f"{rel(p)} selects {len(pods)} shipped workloads"
        containers = {c["name"]: c for c in pods[0]["spec"]["containers"]}
        assert "istio-proxy" in containers, "the sidecar override must be named istio-proxy"
        _assert_env_from_secret(_secret_env(containers["istio-proxy"]), doc["metadata"]["namespace"])


def test_envoyproxy_takes_the_keys_from_the_secret():
    ep = pick("EnvoyProxy")
    container = ep["spec"]["provider"]["kubernetes"]["envoyDeployment"]["container"]
    _assert_env_from_secret(_secret_env(container), ep["metadata"]["namespace"])


def test_example_secrets_hold_placeholders_only():
    for path, doc in by_kind()["Secret"]:
        assert "data" not in doc, f"{path}: use stringData placeholders, never encoded key material"
        for key, value in doc["stringData"].items():
            assert value.startswith("PLACEHOLDER"), f"{path}: {key} does not look like a placeholder"


# --- the upstream guard's EnvoyFilter -----------------------------------------


def _guard_patches() -> tuple[dict, dict]:
    ef = pick("EnvoyFilter", name="dpp-upstream-guard")
    patches = {p["applyTo"]: p for p in ef["spec"]["configPatches"]}
    assert set(patches) == {"EXTENSION_CONFIG", "HTTP_FILTER"}
    return patches["EXTENSION_CONFIG"], patches["HTTP_FILTER"]


def test_envoyfilter_places_the_guard_last_before_upstream_codec_on_outbound_routers():
    ext, router = _guard_patches()
    assert router["match"]["context"] == "SIDECAR_OUTBOUND"
    assert router["match"]["listener"]["filterChain"]["filter"]["subFilter"]["name"] == "envoy.filters.http.router"
    assert router["patch"]["operation"] == "MERGE"
    ups = router["patch"]["value"]["typed_config"]["upstream_http_filters"]
    assert [f["name"] for f in ups] == [ext["patch"]["value"]["name"], "envoy.filters.http.upstream_codec"]
    assert ups[0]["config_discovery"]["type_urls"] == [ext["patch"]["value"]["typed_config"]["@type"]]
    cfg = ext["patch"]["value"]["typed_config"]["config"]
    assert cfg["root_id"] == "dpp_upstream_guard"
    assert cfg["failure_policy"] == "FAIL_CLOSED"
    assert "fail_open" not in cfg
    assert cfg["vm_config"]["environment_variables"]["host_env_keys"] == KEY_VARS
    remote = cfg["vm_config"]["code"]["remote"]
    assert remote["http_uri"]["uri"] == pick("WasmPlugin", name="dpp-guard")["spec"]["url"]
    assert remote["sha256"] == pick("WasmPlugin", name="dpp-guard")["spec"]["sha256"]


# --- field encryption: the holds and their order ------------------------------

# Istio's TrafficExtension / WasmPlugin mode -> the EnvoyFilter context of
# the listeners it lands on (pilot/pkg/model/extensions.go workloadModeForListenerClass).
MODE_CONTEXT = {"CLIENT": "SIDECAR_OUTBOUND", "SERVER": "SIDECAR_INBOUND"}


def _field_plugins(flavour: str) -> list[dict]:
    kind = "TrafficExtension" if flavour == "trafficextension" else "WasmPlugin"
    return [
        d for p, d in manifests()
        if rel(p).startswith(FIELD_FLAVOURS[flavour] + "/") and d["kind"] == kind and ("wasm" in d["spec"] or kind == "WasmPlugin")
    ]


def test_the_trafficextension_holds_wrap_dpp_guard_in_the_right_order():
    """Per namespace: response hold, dpp_guard, request hold in one phase,
    priorities strictly descending (Istio orders a phase by priority,
    highest first), same workloads and traffic as dpp_guard; the Lua is the
    shipped hold code."""
    plugins = _field_plugins("trafficextension")
    assert {p["metadata"]["namespace"] for p in plugins} == {"orders", "fulfillment"}
    for plugin in plugins:
        ns = plugin["metadata"]["namespace"]
        holds = {
            d["metadata"]["name"]: d
            for p, d in manifests()
            if rel(p).startswith(FIELD_FLAVOURS["trafficextension"] + "/") and d["kind"] == "TrafficExtension"
            and d["metadata"]["namespace"] == ns and "lua" in d["spec"]
        }
        assert set(holds) == {"dpp-guard-hold-response", "dpp-guard-hold-request"}
        response, request = holds["dpp-guard-hold-response"]["spec"], holds["dpp-guard-hold-request"]["spec"]
        for hold in (response, request):
            assert hold["phase"] == plugin["spec"]["phase"]
            assert hold["selector"] == plugin["spec"]["selector"]
            assert hold["match"] == plugin["spec"]["match"]
        assert response["priority"] > plugin["spec"]["priority"] > request["priority"]
        assert response["lua"]["inlineCode"] == hold_code("response")
        assert request["lua"]["inlineCode"] == hold_code("request")


def test_the_envoyfilter_holds_wrap_every_generated_filter_on_the_plugins_side():
    for plugin in _field_plugins("wasmplugin"):
        ns = plugin["metadata"]["namespace"]
        ef = pick("EnvoyFilter", name="dpp-guard-holds", namespace=ns)
        assert ef["spec"]["workloadSelector"]["labels"] == plugin["spec"]["selector"]["matchLabels"]
        (mode,) = {m["mode"] for m in plugin["spec"]["match"]}
        first, before_router = ef["spec"]["configPatches"]
        for patch in (first, before_router):
            assert patch["applyTo"] == "HTTP_FILTER"
            assert patch["match"]["context"] == MODE_CONTEXT[mode]
            assert patch["match"]["listener"]["filterChain"]["filter"]["name"] == "envoy.filters.network.http_connection_manager"
            assert patch["patch"]["value"]["typed_config"]["@type"] == LUA_TYPE
        assert first["patch"]["operation"] == "INSERT_FIRST"
        assert "subFilter" not in first["match"]["listener"]["filterChain"]["filter"]
        assert first["patch"]["value"]["typed_config"]["default_source_code"]["inline_string"] == hold_code("response")
        assert before_router["patch"]["operation"] == "INSERT_BEFORE"
        assert before_router["match"]["listener"]["filterChain"]["filter"]["subFilter"]["name"] == "envoy.filters.http.router"
        assert before_router["patch"]["value"]["typed_config"]["default_source_code"]["inline_string"] == hold_code("request")


def test_both_flavours_run_the_same_plugin_with_the_same_policy():
    """The WasmPlugin flavour is the TrafficExtension flavour for older Istio:
    same module, settings, workloads, traffic and policy."""
    te = {(d["metadata"]["namespace"], d["metadata"]["name"]): d for d in _field_plugins("trafficextension")}
    wp = {(d["metadata"]["namespace"], d["metadata"]["name"]): d for d in _field_plugins("wasmplugin")}
    assert set(te) == set(wp)
    for key, t in te.items():
        w = wp[key]["spec"]
        for field in ("selector", "match", "phase", "priority"):
            assert w[field] == t["spec"][field], (key, field)
        for field, value in t["spec"]["wasm"].items():
            assert w[field] == value, (key, field)


def test_the_egress_plugin_is_client_side_and_the_ingress_plugin_server_side():
    for flavour in FIELD_FLAVOURS:
        modes = {d["metadata"]["namespace"]: [m["mode"] for m in d["spec"]["match"]] for d in _field_plugins(flavour)}
        assert modes == {"orders": ["CLIENT"], "fulfillment": ["SERVER"]}, flavour


def _policy_of(doc: dict) -> dict:
    return doc["spec"]["wasm"]["pluginConfig"] if doc["kind"] == "TrafficExtension" else doc["spec"]["pluginConfig"]


def test_egress_encrypts_what_ingress_decrypts():
    """The two sides pair up: same routes' field rules mirrored, same
    contexts; egress trusts only the pod-local caller, ingress demands TLS."""
    egress = _policy_of(pick("TrafficExtension", name="dpp-guard-egress"))
    ingress = _policy_of(pick("TrafficExtension", name="dpp-guard-ingress"))
    (out,), (into,) = egress["routes"], ingress["routes"]
    assert out["encrypt"] == [dict(r, direction="request") for r in into["decrypt"]]
    assert out["decrypt"] == [dict(r, direction="response") for r in into["encrypt"]]
    assert out["match"]["path"] == into["match"]["path"]
    assert out["match"]["host"], "the egress route names the relay: every outbound request passes the filter"
    assert egress["transport"]["downstream"]["trusted_tls_terminator"] is True
    assert ingress["transport"]["downstream"]["trusted_tls_terminator"] is False


def test_field_rules_are_the_shipped_hop_policies():
    """The Kubernetes sides run the field rules of envoy/policies: the
    sender (and the Gateway) those of hop A, the receiver those of hop B, so
    a change to the envelope rules there reaches deploy/ too."""
    from deploy_support import ENVOY_DIR

    hop = {side: json.loads((ENVOY_DIR / "policies" / f"hop-{side}.json").read_text()) for side in ("a-encrypt", "b-decrypt")}

    def rules(policy: dict) -> list[dict]:
        return [{k: r[k] for k in ("encrypt", "decrypt", "body") if k in r} for r in policy["routes"] if "encrypt" in r or "decrypt" in r]

    for flavour in FIELD_FLAVOURS:
        for plugin in _field_plugins(flavour):
            side = "a-encrypt" if plugin["metadata"]["namespace"] == "orders" else "b-decrypt"
            assert rules(_policy_of(plugin)) == rules(hop[side]), (flavour, plugin["metadata"]["name"])
    assert rules(pick("EnvoyExtensionPolicy")["spec"]["wasm"][0]["config"]) == rules(hop["a-encrypt"])


def test_egress_policy_agrees_with_the_upstream_guard_on_upstream_rules():
    # The sidecar of orders-api runs dpp_guard (egress) and the upstream
    # guard; both read transport.upstream (docs/policy.md#transport).
    ext, _ = _guard_patches()
    guard = json.loads(ext["patch"]["value"]["typed_config"]["config"]["configuration"]["value"])
    for flavour in FIELD_FLAVOURS:
        (egress,) = [d for d in _field_plugins(flavour) if d["metadata"]["namespace"] == "orders"]
        assert _policy_of(egress)["transport"]["upstream"] == guard["transport"]["upstream"], flavour


def test_istio_policies_exempt_exactly_the_inbound_loopback_cluster():
    for where, spec in wasm_specs():
        ns = "fulfillment" if "fulfillment" in where else "orders"
        (pod,) = _selected_pods(ns, {"dpp-guard/protected": "true"})
        app_ports = {p["containerPort"] for c in pod["spec"]["containers"] if c["name"] != "istio-proxy" for p in c.get("ports", [])}
        clusters = spec["pluginConfig"]["transport"]["upstream"]["clusters"]
        exempt = {name for name, rule in clusters.items() if "exempt" in rule}
        # Only the sidecar-to-app hop inside the pod, never an outbound cluster.
        assert exempt == {f"inbound|{port}||" for port in app_ports}, where
    assert pick("WasmPlugin", name="dpp-guard")["spec"]["match"] == [{"mode": "SERVER"}]


# --- Envoy Gateway: EnvoyPatchPolicy ------------------------------------------


def _epp_patches() -> list[dict]:
    return pick("EnvoyPatchPolicy")["spec"]["jsonPatches"]


def eg_wasm_filter_name(eep: dict, index: int = 0) -> str:
    """internal/xds/translator/wasm.go wasmFilterName + gatewayapi irConfigNameForWasm."""
    meta = eep["metadata"]
    return f"envoy.filters.http.wasm/envoyextensionpolicy/{meta['namespace']}/{meta['name']}/wasm/{index}"


def test_envoypatchpolicy_targets_the_gateway_of_the_extension_policy():
    epp, eep = pick("EnvoyPatchPolicy"), pick("EnvoyExtensionPolicy")
    assert epp["metadata"]["namespace"] == eep["metadata"]["namespace"]
    (target,) = eep["spec"]["targetRefs"]
    assert epp["spec"]["targetRef"] == {k: target[k] for k in ("group", "kind", "name")}
    assert epp["spec"]["type"] == "JSONPatch"
    ns, gw = eep["metadata"]["namespace"], target["name"]
    for jp in _epp_patches():
        if jp["type"].endswith(".Listener"):
            assert jp["name"].startswith(f"{ns}/{gw}/"), "Envoy Gateway names listeners <namespace>/<gateway>/<listener>"


def test_envoypatchpolicy_wraps_the_extension_policys_wasm_filter_with_the_holds():
    eep = pick("EnvoyExtensionPolicy")
    listener = [jp for jp in _epp_patches() if jp["type"].endswith(".Listener")]
    response, request, guard = listener
    assert response["operation"]["op"] == "add" and "path" not in response["operation"]
    assert f"@.name=='{eg_wasm_filter_name(eep)}'" in response["operation"]["jsonPath"]
    assert response["operation"]["value"]["typed_config"]["default_source_code"]["inline_string"] == hold_code("response")
    assert request["operation"]["op"] == "add" and "path" not in request["operation"]
    assert "@.name=='envoy.filters.http.router'" in request["operation"]["jsonPath"]
    assert request["operation"]["value"]["typed_config"]["default_source_code"]["inline_string"] == hold_code("request")
    assert guard["operation"]["path"] == "/upstream_http_filters"


def test_envoypatchpolicy_guard_is_fail_closed_pinned_and_reads_the_same_policy():
    (_, _, _, guard_patch) = _epp_patches()
    guard, codec = guard_patch["operation"]["value"]
    assert codec["name"] == "envoy.filters.http.upstream_codec", "upstream_codec must be last"
    cfg = guard["typed_config"]["config"]
    assert guard["typed_config"]["@type"] == WASM_TYPE
    assert cfg["root_id"] == "dpp_upstream_guard"
    assert cfg["failure_policy"] == "FAIL_CLOSED"
    assert cfg["vm_config"]["environment_variables"]["host_env_keys"] == KEY_VARS
    remote = cfg["vm_config"]["code"]["remote"]
    assert HEX64.match(remote["sha256"])
    module_cluster = _epp_patches()[0]["operation"]["value"]
    assert remote["http_uri"]["cluster"] == module_cluster["name"]
    assert remote["http_uri"]["uri"].startswith("https://")
    assert module_cluster["transport_socket"]["name"] == "envoy.transport_sockets.tls", "the module is fetched over TLS"
    (wasm,) = pick("EnvoyExtensionPolicy")["spec"]["wasm"]
    assert json.loads(cfg["configuration"]["value"]) == wasm["config"]


# --- policies ------------------------------------------------------------------


def _policies() -> dict[str, dict]:
    ext, _ = _guard_patches()
    out = {f"{w}:pluginConfig": spec["pluginConfig"] for w, spec in wasm_specs()}
    out["EnvoyExtensionPolicy.config"] = pick("EnvoyExtensionPolicy")["spec"]["wasm"][0]["config"]
    out["EnvoyFilter.configuration"] = json.loads(ext["patch"]["value"]["typed_config"]["config"]["configuration"]["value"])
    guard = _epp_patches()[3]["operation"]["value"][0]["typed_config"]["config"]
    out["EnvoyPatchPolicy.configuration"] = json.loads(guard["configuration"]["value"])
    return out


def test_the_inbound_plugin_and_the_upstream_guard_carry_the_same_policy():
    # dpp_guard and dpp_upstream_guard read the same document (transport
    # exemptions matter to both): docs/policy.md#transport.
    policies = _policies()
    assert policies["istio/wasmplugin.yaml:pluginConfig"] == policies["EnvoyFilter.configuration"]


@pytest.fixture(scope="module")
def dpp_guard_cli():
    subprocess.run(["cargo", "build", "-q", "-p", "dpp-guard-cli"], cwd=ROOT, check=True)
    return ROOT / "target" / "debug" / "dpp-guard"


def test_shipped_policies_are_accepted_by_dpp_guard(dpp_guard_cli, tmp_path):
    for where, policy in _policies().items():
        f = tmp_path / "policy.json"
        f.write_text(json.dumps(policy))
        res = subprocess.run([str(dpp_guard_cli), "validate-policy", str(f)], capture_output=True, text=True)
        assert res.returncode == 0, f"{where}: {res.stdout}{res.stderr}"


def env_names_the_policy_reads(policy: dict) -> set[str]:
    """Environment variables a policy names for its keys (`keys.env`, the
    keyring; `logging.log_key_env`, the log key), where it names them."""
    names = set()
    if isinstance(policy.get("keys"), dict) and "env" in policy["keys"]:
        names.add(policy["keys"]["env"])
    if isinstance(policy.get("logging"), dict) and "log_key_env" in policy["logging"]:
        names.add(policy["logging"]["log_key_env"])
    return names


def test_every_key_variable_a_policy_names_reaches_its_vm():
    for where, spec in wasm_specs():
        host = {e["name"] for e in spec["vmConfig"]["env"] if e.get("valueFrom") == "HOST"}
        assert env_names_the_policy_reads(spec["pluginConfig"]) <= host, where
    eg = set(pick("EnvoyExtensionPolicy")["spec"]["wasm"][0]["env"]["hostKeys"])
    assert env_names_the_policy_reads(_policies()["EnvoyExtensionPolicy.config"]) <= eg
    ext, _ = _guard_patches()
    for where, cfg in [
        ("EnvoyFilter", ext["patch"]["value"]["typed_config"]["config"]),
        ("EnvoyPatchPolicy", _epp_patches()[3]["operation"]["value"][0]["typed_config"]["config"]),
    ]:
        keys = set(cfg["vm_config"]["environment_variables"]["host_env_keys"])
        assert env_names_the_policy_reads(json.loads(cfg["configuration"]["value"])) <= keys, where


def test_shipped_policies_match_the_policy_json_schema(tmp_path):
    files = []
    for i, (where, policy) in enumerate(_policies().items()):
        f = tmp_path / f"policy-{i}.json"
        f.write_text(json.dumps(policy))
        files.append(f)
    res = check_jsonschema(ROOT / "schema" / "policy.schema.json", *files)
    assert res.returncode == 0, f"{list(_policies())}: {res.stdout}{res.stderr}"


def test_dpp_guard_refuses_a_policy_with_an_unknown_field(dpp_guard_cli, tmp_path):
    policy = copy.deepcopy(_policies()["istio/wasmplugin.yaml:pluginConfig"])
    policy["routes"][0]["kill_swtich"] = True
    f = tmp_path / "policy.json"
    f.write_text(json.dumps(policy))
    res = subprocess.run([str(dpp_guard_cli), "validate-policy", str(f)], capture_output=True, text=True)
    assert res.returncode == 1
    assert "kill_swtich" in res.stdout + res.stderr


# --- the EnvoyFilter's Envoy config, judged by Envoy itself ------------------


def _bootstrap(router_typed_config: dict) -> dict:
    hcm = {
        "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
        "stat_prefix": "validate",
        "route_config": {
            "virtual_hosts": [{"name": "v", "domains": ["*"], "routes": [{"match": {"prefix": "/"}, "route": {"cluster": "c"}}]}]
        },
        "http_filters": [{"name": "envoy.filters.http.router", "typed_config": router_typed_config}],
    }
    return {
        "node": {"id": "validate", "cluster": "validate"},
        "static_resources": {
            "listeners": [
                {
                    "name": "l",
                    "address": {"socket_address": {"address": "127.0.0.1", "port_value": 0}},
                    "filter_chains": [{"filters": [{"name": "envoy.filters.network.http_connection_manager", "typed_config": hcm}]}],
                }
            ],
            "clusters": [
                {
                    "name": "c",
                    "load_assignment": {
                        "cluster_name": "c",
                        "endpoints": [{"lb_endpoints": [{"endpoint": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": 9}}}}]}],
                    },
                }
            ],
        },
    }


def _as_istio_agent_delivers(ext_value: dict, wasm: Path) -> dict:
    """istio-agent replaces the oci:// remote code by the fetched local file."""
    typed = copy.deepcopy(ext_value["typed_config"])
    typed["config"]["vm_config"]["code"] = {"local": {"filename": str(wasm)}}
    return typed


def _envoy_validate(envoy_bin: Path, tmp_path: Path, bootstrap: dict) -> subprocess.CompletedProcess:
    cfg = tmp_path / "bootstrap.yaml"
    cfg.write_text(yaml.safe_dump(bootstrap))
    return subprocess.run(
        [str(envoy_bin), "--mode", "validate", "-c", str(cfg), "-l", "warning"], capture_output=True, text=True
    )


@pytest.mark.parametrize("delivery", ["ecds", "inline"])
def test_envoy_accepts_the_patched_router(envoy_bin, tmp_path, wasm_bytes, delivery):
    from deploy_support import WASM

    ext, router = _guard_patches()
    router_cfg = copy.deepcopy(router["patch"]["value"]["typed_config"])
    guard = router_cfg["upstream_http_filters"][0]
    local = _as_istio_agent_delivers(ext["patch"]["value"], WASM)
    if delivery == "ecds":
        ecds = tmp_path / "ecds.yaml"
        ecds.write_text(
            yaml.safe_dump(
                {
                    "resources": [
                        {
                            "@type": "type.googleapis.com/envoy.config.core.v3.TypedExtensionConfig",
                            "name": ext["patch"]["value"]["name"],
                            "typed_config": local,
                        }
                    ]
                }
            )
        )
        # Istio serves it over ADS; a file source is the offline equivalent.
        # Validate mode checks the discovery entry (name, type_urls, codec
        # last) but does not read the file: the "inline" case below is the
        # one that makes Envoy judge the Wasm config itself.
        guard["config_discovery"]["config_source"].pop("ads")
        guard["config_discovery"]["config_source"]["path_config_source"] = {"path": str(ecds)}
    else:
        # The Wasm config itself (field names, types) checked by Envoy.
        guard.pop("config_discovery")
        guard["typed_config"] = local
    res = _envoy_validate(envoy_bin, tmp_path, _bootstrap(router_cfg))
    assert res.returncode == 0, res.stdout + res.stderr
    assert "OK" in res.stdout + res.stderr


def test_envoy_refuses_a_router_patch_whose_codec_is_not_last(envoy_bin, tmp_path):
    _, router = _guard_patches()
    router_cfg = copy.deepcopy(router["patch"]["value"]["typed_config"])
    router_cfg["upstream_http_filters"].reverse()
    res = _envoy_validate(envoy_bin, tmp_path, _bootstrap(router_cfg))
    assert res.returncode != 0
    assert "must be the last filter" in res.stdout + res.stderr


def test_vendored_crd_schemas_are_the_shared_ones():
    """deploy/schemas lets a clone without shared/ beside it run every check;
    it must stay a byte-for-byte copy of the project's reference schemas."""
    from deploy_support import VENDORED_SCHEMAS, shared_schemas

    shared = shared_schemas()
    if shared is None:
        pytest.skip("no shared/schemas beside this checkout to compare with (CI has it)")
    for ref in sorted(shared.glob("*.json")):
        assert (VENDORED_SCHEMAS / ref.name).read_bytes() == ref.read_bytes(), f"deploy/schemas/{ref.name} is stale"
