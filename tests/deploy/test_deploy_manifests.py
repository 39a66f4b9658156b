"""The manifests under deploy/ are what `kubectl apply` would accept and
what dpp-guard needs: CRD schemas, CRD CEL rules, fail-closed settings,
keys only from the proxy environment, one valid policy everywhere."""

from __future__ import annotations

import copy
import json
import re
import subprocess
from pathlib import Path

import pytest
import yaml

import k8s_cel
from deploy_support import DEPLOY, ROOT, by_kind, load_one, manifest_paths

CHECK_JSONSCHEMA = ROOT / ".venv" / "bin" / "check-jsonschema"
KUBERNETES_VALIDATE = ROOT / ".venv" / "bin" / "kubernetes-validate"
# Built-in kinds: validated strictly against the Kubernetes OpenAPI schema
# that kubernetes-validate ships (offline).
BUILTIN_KINDS = {"Deployment", "Secret"}
SCHEMA_FILES = {
    "WasmPlugin": "istio-wasmplugin-v1alpha1.json",
    "EnvoyExtensionPolicy": "envoyextensionpolicy_v1alpha1.json",
}
# Kinds without a CRD schema here get the structural checks below instead.
KNOWN_KINDS = set(SCHEMA_FILES) | {"EnvoyFilter", "EnvoyProxy", "Deployment", "Secret", "PrometheusRule"}
KEY_VARS = ["DPP_GUARD_KEYS", "DPP_GUARD_LOG_KEY"]
HEX64 = re.compile(r"^[a-f0-9]{64}$")


def schema_for(schemas: Path, kind: str) -> Path:
    return schemas / SCHEMA_FILES[kind]


def check_jsonschema(schema: Path, instance: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(CHECK_JSONSCHEMA), "--schemafile", str(schema), str(instance)], capture_output=True, text=True
    )


def cel_violations(schemas: Path, doc: dict) -> list[str]:
    schema = json.loads(schema_for(schemas, doc["kind"]).read_text())
    return [str(v) for v in k8s_cel.violations(schema, doc)]


def write(tmp_path: Path, name: str, doc: dict) -> Path:
    p = tmp_path / name
    p.write_text(yaml.safe_dump(doc, sort_keys=False))
    return p


def crd_manifests() -> list[Path]:
    return [p for p in manifest_paths() if load_one(p)["kind"] in SCHEMA_FILES]


def only(kind: str) -> dict:
    items = by_kind()[kind]
    assert len(items) == 1, f"expected one {kind} in deploy/"
    return items[0][1]


# --- coverage ---------------------------------------------------------------


def test_every_manifest_is_a_kind_the_checks_cover():
    kinds = {p.relative_to(DEPLOY).as_posix(): load_one(p)["kind"] for p in manifest_paths()}
    assert kinds, "no manifests found under deploy/"
    unknown = {p: k for p, k in kinds.items() if k not in KNOWN_KINDS}
    assert not unknown, f"manifests of kinds no test validates: {unknown}"
    assert KNOWN_KINDS <= set(kinds.values()), "a deliverable manifest kind is missing"


# --- CRD schemas (check-jsonschema) and CEL rules ---------------------------


@pytest.mark.parametrize("path", crd_manifests(), ids=lambda p: p.relative_to(DEPLOY).as_posix())
def test_crd_manifest_passes_check_jsonschema(schemas, path):
    res = check_jsonschema(schema_for(schemas, load_one(path)["kind"]), path)
    assert res.returncode == 0, res.stdout + res.stderr


@pytest.mark.parametrize("path", crd_manifests(), ids=lambda p: p.relative_to(DEPLOY).as_posix())
def test_crd_manifest_passes_the_crd_cel_rules(schemas, path):
    assert cel_violations(schemas, load_one(path)) == []


def test_pinned_copies_from_make_oci_pass_schema_and_cel(schemas, make_oci):
    rendered = make_oci / "deploy"
    checked = 0
    for path in manifest_paths(rendered):
        doc = load_one(path)
        if doc["kind"] in SCHEMA_FILES:
            res = check_jsonschema(schema_for(schemas, doc["kind"]), path)
            assert res.returncode == 0, res.stdout + res.stderr
            assert cel_violations(schemas, doc) == []
            checked += 1
    assert checked == len(crd_manifests())


def kubernetes_validate(path: Path) -> subprocess.CompletedProcess:
    return subprocess.run([str(KUBERNETES_VALIDATE), "--strict", str(path)], capture_output=True, text=True)


def builtin_manifests() -> list[Path]:
    return [p for p in manifest_paths() if load_one(p)["kind"] in BUILTIN_KINDS]


@pytest.mark.parametrize("path", builtin_manifests(), ids=lambda p: p.relative_to(DEPLOY).as_posix())
def test_builtin_manifest_passes_kubernetes_validate(path):
    res = kubernetes_validate(path)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "passed" in res.stdout + res.stderr


def test_kubernetes_validate_refuses_a_misspelt_secret_ref(tmp_path):
    def mutate(d):
        proxy = [c for c in d["spec"]["template"]["spec"]["containers"] if c["name"] == "istio-proxy"][0]
        ref = proxy["env"][0]["valueFrom"].pop("secretKeyRef")
        proxy["env"][0]["valueFrom"]["secretRef"] = ref

    res = kubernetes_validate(write(tmp_path, "workload.yaml", broken("Deployment", mutate)))
    assert res.returncode != 0, res.stdout + res.stderr


# Negative cases: each broken manifest must be refused by the check that
# guards against it (the schema for enums/unknown fields, CEL for the
# cross-field rules).


def broken(kind: str, mutate) -> dict:
    doc = copy.deepcopy(only(kind))
    mutate(doc)
    return doc


SCHEMA_BREAKS = {
    "wasmplugin-wrong-failstrategy-enum": ("WasmPlugin", lambda d: d["spec"].update(failStrategy="FAIL_SOMETIMES")),
    "wasmplugin-wrong-phase-enum": ("WasmPlugin", lambda d: d["spec"].update(phase="AUTHORIZATION")),
    "wasmplugin-unknown-field": ("WasmPlugin", lambda d: d["spec"]["vmConfig"].update(envs=[])),
    "wasmplugin-bad-sha256": ("WasmPlugin", lambda d: d["spec"].update(sha256="sha256:" + "a" * 64)),
    "eep-unknown-field": ("EnvoyExtensionPolicy", lambda d: d["spec"]["wasm"][0].update(failClosed=True)),
    "eep-wrong-code-type-enum": ("EnvoyExtensionPolicy", lambda d: d["spec"]["wasm"][0]["code"].update(type="OCI")),
}


@pytest.mark.parametrize("case", sorted(SCHEMA_BREAKS))
def test_schema_refuses_broken_manifest(schemas, tmp_path, case):
    kind, mutate = SCHEMA_BREAKS[case]
    path = write(tmp_path, f"{case}.yaml", broken(kind, mutate))
    res = check_jsonschema(schema_for(schemas, kind), path)
    assert res.returncode != 0, f"check-jsonschema accepted {case}"
    assert "validation errors" in res.stdout


def _host_env_with_value(d):
    d["spec"]["vmConfig"]["env"][0]["value"] = "inline-secret"


def _selector_and_targetrefs(d):
    d["spec"]["targetRefs"] = [{"group": "gateway.networking.k8s.io", "kind": "Gateway", "name": "edge"}]


CEL_BREAKS = {
    "wasmplugin-host-env-with-value": ("WasmPlugin", _host_env_with_value, "value may only be set when valueFrom is INLINE"),
    "wasmplugin-selector-and-targetrefs": ("WasmPlugin", _selector_and_targetrefs, "only one of targetRefs or selector"),
    "wasmplugin-url-scheme": ("WasmPlugin", lambda d: d["spec"].update(url="ftp://registry.example.com/x"), "url must have schema"),
    "wasmplugin-wildcard-label": (
        "WasmPlugin",
        lambda d: d["spec"]["selector"]["matchLabels"].update({"app": "orders-*"}),
        "wildcard not allowed",
    ),
    "eep-targetref-kind": (
        "EnvoyExtensionPolicy",
        lambda d: d["spec"]["targetRefs"][0].update(kind="Service"),
        "can only have a targetRefs[*].kind",
    ),
    "eep-no-target": ("EnvoyExtensionPolicy", lambda d: d["spec"].pop("targetRefs"), "either targetRef or targetRefs"),
    "eep-image-type-without-image": (
        "EnvoyExtensionPolicy",
        lambda d: d["spec"]["wasm"][0]["code"].update(type="HTTP"),
        "If type is HTTP, http field needs to be set",
    ),
}


@pytest.mark.parametrize("case", sorted(CEL_BREAKS))
def test_cel_refuses_broken_manifest(schemas, tmp_path, case):
    kind, mutate, message = CEL_BREAKS[case]
    doc = broken(kind, mutate)
    # The JSON Schema alone lets these through: that is why CEL is checked.
    res = check_jsonschema(schema_for(schemas, kind), write(tmp_path, f"{case}.yaml", doc))
    assert res.returncode == 0, res.stdout
    found = cel_violations(schemas, doc)
    assert any(message in v for v in found), found


# --- dpp-guard's own requirements --------------------------------------------


def test_wasmplugin_is_pinned_fail_closed_and_takes_keys_from_host():
    spec = only("WasmPlugin")["spec"]
    assert spec["url"].startswith("oci://")
    assert HEX64.match(spec["sha256"])
    assert spec["failStrategy"] == "FAIL_CLOSE"
    assert spec["pluginName"] == "dpp_guard"
    assert spec["phase"] in {"AUTHN", "AUTHZ", "STATS"}
    assert spec["vmConfig"]["env"] == [{"name": n, "valueFrom": "HOST"} for n in KEY_VARS]


def test_eep_is_pinned_fail_closed_and_takes_keys_from_host():
    (wasm,) = only("EnvoyExtensionPolicy")["spec"]["wasm"]
    assert wasm["rootID"] == "dpp_guard"
    assert wasm["failOpen"] is False
    assert wasm["code"]["type"] == "Image"
    assert not wasm["code"]["image"]["url"].startswith("oci://"), "Envoy Gateway takes registry/repo:tag"
    # The same image as the WasmPlugin's.
    assert "oci://" + wasm["code"]["image"]["url"] == only("WasmPlugin")["spec"]["url"]
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


def test_istio_proxy_override_takes_the_keys_from_the_secret():
    dep = only("Deployment")
    pod = dep["spec"]["template"]
    containers = {c["name"]: c for c in pod["spec"]["containers"]}
    assert "istio-proxy" in containers, "the sidecar override must be named istio-proxy"
    _assert_env_from_secret(_secret_env(containers["istio-proxy"]), dep["metadata"]["namespace"])
    # The WasmPlugin must select this workload, in its namespace.
    wp = only("WasmPlugin")
    assert wp["metadata"]["namespace"] == dep["metadata"]["namespace"]
    assert wp["spec"]["selector"]["matchLabels"].items() <= pod["metadata"]["labels"].items()
    ef = only("EnvoyFilter")
    assert ef["spec"]["workloadSelector"]["labels"].items() <= pod["metadata"]["labels"].items()


def test_envoyproxy_takes_the_keys_from_the_secret():
    ep = only("EnvoyProxy")
    container = ep["spec"]["provider"]["kubernetes"]["envoyDeployment"]["container"]
    _assert_env_from_secret(_secret_env(container), ep["metadata"]["namespace"])


def test_example_secrets_hold_placeholders_only():
    for path, doc in by_kind()["Secret"]:
        assert "data" not in doc, f"{path}: use stringData placeholders, never encoded key material"
        for key, value in doc["stringData"].items():
            assert value.startswith("PLACEHOLDER"), f"{path}: {key} does not look like a placeholder"


def _guard_patches(ef: dict) -> tuple[dict, dict]:
    patches = {p["applyTo"]: p for p in ef["spec"]["configPatches"]}
    assert set(patches) == {"EXTENSION_CONFIG", "HTTP_FILTER"}
    return patches["EXTENSION_CONFIG"], patches["HTTP_FILTER"]


# networking.istio.io/v1alpha3 EnvoyFilter enums (istio/api envoy_filter.proto);
# the shared schemas do not cover EnvoyFilter, so the values are checked here.
ENVOYFILTER_APPLY_TO = {
    "INVALID", "LISTENER", "FILTER_CHAIN", "NETWORK_FILTER", "HTTP_FILTER", "ROUTE_CONFIGURATION",
    "VIRTUAL_HOST", "HTTP_ROUTE", "CLUSTER", "EXTENSION_CONFIG", "BOOTSTRAP", "LISTENER_FILTER",
}
ENVOYFILTER_CONTEXT = {"ANY", "SIDECAR_INBOUND", "SIDECAR_OUTBOUND", "GATEWAY"}
ENVOYFILTER_OPERATION = {
    "INVALID", "MERGE", "ADD", "REMOVE", "INSERT_BEFORE", "INSERT_AFTER", "INSERT_FIRST", "REPLACE",
}
ENVOYFILTER_SPEC_FIELDS = {"workloadSelector", "targetRefs", "configPatches", "priority"}
ENVOYFILTER_PATCH_FIELDS = {"applyTo", "match", "patch"}


def test_envoyfilter_uses_only_known_fields_and_enum_values():
    ef = only("EnvoyFilter")
    assert ef["apiVersion"] == "networking.istio.io/v1alpha3"
    assert set(ef["spec"]) <= ENVOYFILTER_SPEC_FIELDS
    for p in ef["spec"]["configPatches"]:
        assert set(p) <= ENVOYFILTER_PATCH_FIELDS
        assert p["applyTo"] in ENVOYFILTER_APPLY_TO
        assert p["patch"]["operation"] in ENVOYFILTER_OPERATION
        assert set(p["patch"]) <= {"operation", "value", "filterClass"}
        if "match" in p:
            assert p["match"].get("context", "ANY") in ENVOYFILTER_CONTEXT
            assert set(p["match"]) <= {"context", "proxy", "listener", "routeConfiguration", "cluster"}


def test_envoyfilter_places_the_guard_last_before_upstream_codec_on_outbound_routers():
    ext, router = _guard_patches(only("EnvoyFilter"))
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
    assert remote["http_uri"]["uri"] == only("WasmPlugin")["spec"]["url"]
    assert remote["sha256"] == only("WasmPlugin")["spec"]["sha256"]


def _policies() -> dict[str, dict]:
    ext, _ = _guard_patches(only("EnvoyFilter"))
    return {
        "WasmPlugin.pluginConfig": only("WasmPlugin")["spec"]["pluginConfig"],
        "EnvoyExtensionPolicy.config": only("EnvoyExtensionPolicy")["spec"]["wasm"][0]["config"],
        "EnvoyFilter.configuration": json.loads(ext["patch"]["value"]["typed_config"]["config"]["configuration"]["value"]),
    }


def test_both_istio_filters_carry_the_same_policy():
    # dpp_guard and dpp_upstream_guard read the same document (transport
    # exemptions matter to both): docs/policy.md#transport.
    policies = _policies()
    assert policies["WasmPlugin.pluginConfig"] == policies["EnvoyFilter.configuration"]


def test_istio_policy_exempts_exactly_the_inbound_loopback_cluster():
    wp = only("WasmPlugin")
    dep = only("Deployment")
    app_ports = {
        p["containerPort"] for c in dep["spec"]["template"]["spec"]["containers"] if c["name"] != "istio-proxy" for p in c.get("ports", [])
    }
    clusters = wp["spec"]["pluginConfig"]["transport"]["upstream"]["clusters"]
    exempt = {name for name, rule in clusters.items() if "exempt" in rule}
    # Only the sidecar-to-app hop inside the pod, never an outbound cluster.
    assert exempt == {f"inbound|{port}||" for port in app_ports}
    assert wp["spec"]["match"] == [{"mode": "SERVER"}]


@pytest.fixture(scope="module")
def dpp_guard_cli():
    subprocess.run(["cargo", "build", "-q", "-p", "dpp-guard-cli"], cwd=ROOT, check=True)
    return ROOT / "target" / "debug" / "dpp-guard"


def test_shipped_policy_is_accepted_by_dpp_guard(dpp_guard_cli, tmp_path):
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


def test_every_key_variable_the_policy_names_reaches_the_vm():
    wp = only("WasmPlugin")["spec"]
    host = {e["name"] for e in wp["vmConfig"]["env"] if e.get("valueFrom") == "HOST"}
    eg = set(only("EnvoyExtensionPolicy")["spec"]["wasm"][0]["env"]["hostKeys"])
    for where, policy in _policies().items():
        missing = env_names_the_policy_reads(policy) - (host & eg)
        assert not missing, f"{where} reads {missing} but the manifests do not pass it to the VM"


def test_shipped_policy_matches_the_policy_json_schema(tmp_path):
    for where, policy in _policies().items():
        f = tmp_path / "policy.json"
        f.write_text(json.dumps(policy))
        res = check_jsonschema(ROOT / "schema" / "policy.schema.json", f)
        assert res.returncode == 0, f"{where}: {res.stdout}{res.stderr}"


def test_dpp_guard_refuses_a_policy_with_an_unknown_field(dpp_guard_cli, tmp_path):
    policy = copy.deepcopy(_policies()["WasmPlugin.pluginConfig"])
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

    ext, router = _guard_patches(only("EnvoyFilter"))
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
    _, router = _guard_patches(only("EnvoyFilter"))
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
