"""What istiod and istio-agent make of the manifests in deploy/istio for one
sidecar: the HTTP filter chain of one listener and the Wasm configs served
over ECDS, ready for a real Envoy.

No control plane runs here, so this follows the Istio sources, function by
function (istio/istio, master of 2026-08 and the 1.29/1.30 release tags):

- pilot/pkg/networking/core/listener_builder.go buildHTTPConnectionManager:
  the chain is [AUTHN extensions, Istio authn, AUTHZ extensions, Istio
  authz, STATS extensions, extensions without a phase, grpc_stats, fault,
  cors, Istio telemetry, router]. Istio's own filters that exist only in
  istio-proxy builds (istio.metadata_exchange, istio_authn, istio.alpn,
  istio.stats) or only with policies in place (RBAC, JWT) are left out:
  upstream Envoy 1.40 does not have the former, the deploy/ manifests
  create none of the latter. Neither can sit between the filters under
  test in a way that changes their order.
- pilot/pkg/model/push_context.go TrafficExtensionsByListenerInfo and
  sortByPriority: extensions of the proxy's namespace and the root
  namespace whose selector matches the pod and whose `match` matches the
  listener (mode CLIENT = outbound, SERVER = inbound; ports), grouped by
  phase, each phase sorted by priority, highest first, ties in creation
  order (here: file order).
- pilot/pkg/networking/core/extension/extensionfilter.go: a Lua extension
  becomes an inline `envoy.filters.http.lua` filter named
  `extensions.istio.io/trafficextension/<ns>.<name>`
  (extension/lua.go BuildHTTPLuaFilter); a Wasm extension becomes a filter of
  that name with `config_discovery` (ADS, initial_fetch_timeout 0s, type
  URLs Wasm and RBAC), its config served over ECDS
  (pilot/pkg/model/extensions.go buildWasmConfig/buildVMConfig: name
  `<ns>.<name>`, root_id = pluginName, configuration = the pluginConfig as
  JSON, runtime v8, remote code with the `oci://` URL, cluster `_`, 30 s
  timeout and `sha256`, failure_policy from failStrategy, HOST env as
  host_env_keys, ISTIO_META_WASM_* key_values for the agent).
- WasmPlugin: Istio <= 1.29 builds the same filter from the WasmPlugin
  (pilot/pkg/model/extensions.go of 1.29, resource name
  `extensions.istio.io/wasmplugin/<ns>.<name>`); Istio >= 1.30 translates
  every WasmPlugin into a TrafficExtension named `<name>~istio-translated-wasmplugin`
  (pilot/pkg/config/kube/extensions/translate.go). Both namings are
  modelled.
- pilot/pkg/networking/core/envoyfilter/listener_patch.go patchHTTPFilters
  and mergeHTTPFilter: EnvoyFilter HTTP_FILTER patches (ADD, INSERT_FIRST,
  INSERT_BEFORE / INSERT_AFTER relative to a subFilter, REPLACE, REMOVE,
  MERGE, where MERGE is a protobuf merge: repeated fields append) after the
  chain is built; EXTENSION_CONFIG ADD patches join the ECDS resources.
- pkg/wasm/convert.go MaybeConvertWasmExtensionConfig / rewriteVMConfig
  (istio-agent): a Wasm config with remote code is fetched (the OCI image
  from the registry, its manifest digest checked against `sha256`),
  the code is rewritten to the local file, ISTIO_META_* variables are
  stripped; a failed fetch replaces the filter by an RBAC deny-all (allow-
  all with FAIL_OPEN).

ADS is replaced by one ECDS file per resource (path_config_source) and the
registry by the OCI layout `make oci` writes: everything Envoy then reads is
what a sidecar would get.
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

ROOT_NAMESPACE = "istio-system"
WASM_TYPE = "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm"
RBAC_TYPE = "type.googleapis.com/envoy.extensions.filters.http.rbac.v3.RBAC"
LUA_TYPE = "type.googleapis.com/envoy.extensions.filters.http.lua.v3.Lua"
ECDS_TYPE = "type.googleapis.com/envoy.config.core.v3.TypedExtensionConfig"
HCM_NAME = "envoy.filters.network.http_connection_manager"
ROUTER = "envoy.filters.http.router"
TE_PREFIX = "extensions.istio.io/trafficextension/"
WP_PREFIX = "extensions.istio.io/wasmplugin/"
SYNTHETIC_WASMPLUGIN = "~istio-translated-wasmplugin"

SIDECAR_INBOUND, SIDECAR_OUTBOUND = "SIDECAR_INBOUND", "SIDECAR_OUTBOUND"
# pilot/pkg/model/extensions.go workloadModeForListenerClass
_MODE_OF_CLASS = {SIDECAR_INBOUND: "SERVER", SIDECAR_OUTBOUND: "CLIENT"}
_PHASES = ["AUTHN", "AUTHZ", "STATS", "UNSPECIFIED"]


@dataclass
class Sidecar:
    namespace: str
    labels: dict[str, str]


@dataclass
class Extension:
    """A TrafficExtension, or a WasmPlugin as Istio sees it."""

    namespace: str
    name: str
    resource_name: str
    spec: dict  # TrafficExtension-shaped: selector, match, phase, priority, wasm | lua
    order: int

    @property
    def phase(self) -> str:
        phase = self.spec.get("phase", "UNSPECIFIED")
        return "UNSPECIFIED" if phase in ("", "UNSPECIFIED", "UNSPECIFIED_PHASE") else phase

    @property
    def priority(self) -> int:
        p = self.spec.get("priority")
        return -(2**31) if p is None else int(p)


def extensions(docs: list[dict], istio: str = "1.30") -> list[Extension]:
    """TrafficExtensions and WasmPlugins of `docs`, named as Istio `istio`
    ("1.29": WasmPlugin filters; "1.30": everything is a TrafficExtension)."""
    out = []
    for i, doc in enumerate(docs):
        meta = doc["metadata"]
        ns = meta.get("namespace", "default")
        if doc["kind"] == "TrafficExtension":
            out.append(Extension(ns, meta["name"], f"{TE_PREFIX}{ns}.{meta['name']}", doc["spec"], i))
        elif doc["kind"] == "WasmPlugin":
            spec = doc["spec"]
            wasm_fields = {k: v for k, v in spec.items() if k not in ("selector", "targetRefs", "targetRef", "match", "phase", "priority")}
            te_spec = {k: spec[k] for k in ("selector", "targetRefs", "match", "phase", "priority") if k in spec}
            te_spec["wasm"] = wasm_fields
            if istio == "1.29":
                out.append(Extension(ns, meta["name"], f"{WP_PREFIX}{ns}.{meta['name']}", te_spec, i))
            else:
                name = meta["name"] + SYNTHETIC_WASMPLUGIN
                out.append(Extension(ns, name, f"{TE_PREFIX}{ns}.{name}", te_spec, i))
    return out


def _selects(spec: dict, namespace: str, sidecar: Sidecar, selector_key: str = "selector") -> bool:
    if namespace not in (sidecar.namespace, ROOT_NAMESPACE):
        return False
    if spec.get("targetRefs"):
        return False  # Gateway / Service attachment: not a sidecar's
    labels = (spec.get(selector_key) or {}).get("matchLabels" if selector_key == "selector" else "labels", {})
    return labels.items() <= sidecar.labels.items()


def _matches_listener(spec: dict, listener_class: str, port: int) -> bool:
    """pilot/pkg/model/extensions.go matchTrafficExtensionSelectors."""
    selectors = spec.get("match") or []
    if not selectors:
        return True
    for ts in selectors:
        mode = ts.get("mode", "UNDEFINED")
        mode_ok = mode in ("UNDEFINED", "CLIENT_AND_SERVER") or mode == _MODE_OF_CLASS[listener_class]
        ports = [p["number"] for p in ts.get("ports", [])]
        if mode_ok and (not ports or port in ports):
            return True
    return False


def _http_filter(ext: Extension) -> dict:
    if "lua" in ext.spec:
        return {
            "name": ext.resource_name,
            "typed_config": {"@type": LUA_TYPE, "default_source_code": {"inline_string": ext.spec["lua"]["inlineCode"]}},
        }
    return {
        "name": ext.resource_name,
        "config_discovery": {
            "config_source": {"ads": {}, "resource_api_version": "V3", "initial_fetch_timeout": "0s"},
            "type_urls": [WASM_TYPE, RBAC_TYPE],
        },
    }


def wasm_ecds_config(ext: Extension) -> dict:
    """The Wasm filter config istiod serves for a Wasm extension (remote code)."""
    wasm = ext.spec["wasm"]
    url = wasm["url"] if "://" in wasm["url"] else "oci://" + wasm["url"]
    env = {"key_values": {"ISTIO_META_WASM_RESOURCE_VERSION": "1"}}
    if wasm.get("imagePullPolicy") not in (None, "UNSPECIFIED_POLICY"):
        env["key_values"]["ISTIO_META_WASM_IMAGE_PULL_POLICY"] = wasm["imagePullPolicy"]
    host = [e["name"] for e in wasm.get("vmConfig", {}).get("env", []) if e.get("valueFrom") == "HOST"]
    for e in wasm.get("vmConfig", {}).get("env", []):
        if e.get("valueFrom", "INLINE") == "INLINE":
            env["key_values"][e["name"]] = e.get("value", "")
    if host:
        env["host_env_keys"] = host
    config = {
        "name": f"{ext.namespace}.{ext.name}",
        "root_id": wasm.get("pluginName", ""),
        "vm_config": {
            "runtime": "envoy.wasm.runtime.v8",
            "code": {
                "remote": {
                    "http_uri": {"uri": url, "cluster": "_", "timeout": "30s"},
                    "sha256": wasm.get("sha256", ""),
                }
            },
            "environment_variables": env,
        },
    }
    if wasm.get("pluginConfig"):
        config["configuration"] = {
            "@type": "type.googleapis.com/google.protobuf.StringValue",
            "value": json.dumps(wasm["pluginConfig"], separators=(",", ":")),
        }
    policy = {"FAIL_OPEN": "FAIL_OPEN", "FAIL_CLOSE": "FAIL_CLOSED", "FAIL_RELOAD": "FAIL_RELOAD"}.get(wasm.get("failStrategy"))
    if policy:
        config["failure_policy"] = policy
    return {"@type": WASM_TYPE, "config": config}


@dataclass
class Generated:
    http_filters: list[dict]
    # ECDS resource name -> typed_config, as istiod serves it (remote code).
    ecds: dict[str, dict] = field(default_factory=dict)


def build_http_filters(docs: list[dict], sidecar: Sidecar, listener_class: str, port: int, istio: str = "1.30") -> Generated:
    """The HCM http_filters (and ECDS configs) of one sidecar listener."""
    matched: dict[str, list[Extension]] = {p: [] for p in _PHASES}
    for ext in extensions(docs, istio):
        if _selects(ext.spec, ext.namespace, sidecar) and _matches_listener(ext.spec, listener_class, port):
            matched[ext.phase].append(ext)
    filters: list[dict] = []
    ecds: dict[str, dict] = {}
    for phase in _PHASES:
        # Python's sort is stable: ties keep creation (file) order.
        for ext in sorted(matched[phase], key=lambda e: -e.priority):
            filters.append(_http_filter(ext))
            if "wasm" in ext.spec:
                ecds[ext.resource_name] = wasm_ecds_config(ext)
    filters += [
        {
            "name": "envoy.filters.http.grpc_stats",
            "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.filters.http.grpc_stats.v3.FilterConfig",
                "emit_filter_state": True,
                "stats_for_all_methods": False,
            },
        },
        {"name": "envoy.filters.http.fault", "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.fault.v3.HTTPFault"}},
        {"name": "envoy.filters.http.cors", "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.cors.v3.Cors"}},
        {"name": ROUTER, "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"}},
    ]
    generated = Generated(filters, ecds)
    apply_envoy_filters(docs, sidecar, listener_class, generated)
    return generated


# --- EnvoyFilter --------------------------------------------------------------


def _context_matches(patch: dict, listener_class: str) -> bool:
    return patch.get("match", {}).get("context", "ANY") in ("ANY", listener_class)


def _filter_match(patch: dict) -> tuple[str | None, str | None]:
    f = patch.get("match", {}).get("listener", {}).get("filterChain", {}).get("filter", {})
    return f.get("name"), f.get("subFilter", {}).get("name")


def proto_merge(dst, src):
    """protobuf Merge on the JSON form: messages merge field by field,
    repeated fields append, scalars are replaced."""
    if isinstance(dst, dict) and isinstance(src, dict):
        out = copy.deepcopy(dst)
        for k, v in src.items():
            out[k] = proto_merge(out[k], v) if k in out else copy.deepcopy(v)
        return out
    if isinstance(dst, list) and isinstance(src, list):
        return copy.deepcopy(dst) + copy.deepcopy(src)
    return copy.deepcopy(src)


def apply_envoy_filters(docs: list[dict], sidecar: Sidecar, listener_class: str, generated: Generated) -> None:
    filters = generated.http_filters
    for doc in docs:
        if doc["kind"] != "EnvoyFilter" or not _selects(doc["spec"], doc["metadata"]["namespace"], sidecar, "workloadSelector"):
            continue
        for patch in doc["spec"]["configPatches"]:
            op = patch["patch"]["operation"]
            value = patch["patch"].get("value")
            if patch["applyTo"] == "EXTENSION_CONFIG" and op == "ADD":
                generated.ecds[value["name"]] = copy.deepcopy(value["typed_config"])
                continue
            if patch["applyTo"] != "HTTP_FILTER" or not _context_matches(patch, listener_class):
                continue
            network, sub = _filter_match(patch)
            if network not in (None, HCM_NAME):
                continue
            hits = [i for i, f in enumerate(filters) if sub is None or f["name"] == sub]
            if op == "ADD":
                filters.append(copy.deepcopy(value))
            elif op == "INSERT_FIRST":
                filters.insert(0, copy.deepcopy(value))
            elif op == "INSERT_BEFORE":
                if sub is None:
                    filters.insert(0, copy.deepcopy(value))
                elif hits:
                    filters.insert(hits[0], copy.deepcopy(value))
            elif op == "INSERT_AFTER":
                if sub is None:
                    filters.append(copy.deepcopy(value))
                elif hits:
                    filters.insert(hits[0] + 1, copy.deepcopy(value))
            elif op == "REPLACE" and sub is not None:
                for i in hits:
                    filters[i] = copy.deepcopy(value)
            elif op == "REMOVE" and sub is not None:
                filters[:] = [f for f in filters if f["name"] != sub]
            elif op == "MERGE":
                for i in hits:
                    f = filters[i]
                    if "typed_config" not in f:
                        continue  # Istio skips MERGE into a discovered filter
                    if value.get("typed_config", {}).get("@type") == f["typed_config"].get("@type"):
                        f["typed_config"] = proto_merge(f["typed_config"], value["typed_config"])
                    if value.get("name"):
                        f["name"] = value["name"]


# --- istio-agent ---------------------------------------------------------------

Fetch = Callable[[str, str], Path]  # (oci URL, expected manifest digest hex) -> local plugin.wasm


def deny_all() -> dict:
    """pkg/wasm/convert.go createHTTPDefaultFilter(fail_open=False): RBAC
    with empty rules denies everything."""
    return {"@type": RBAC_TYPE, "rules": {}, "rules_stat_prefix": "wasm-default-deny"}


def agent_converts(ecds: dict[str, dict], fetch: Fetch) -> dict[str, dict]:
    """What istio-agent hands Envoy for the ECDS resources istiod serves."""
    out = {}
    for name, typed in ecds.items():
        if typed.get("@type") != WASM_TYPE or "remote" not in typed["config"]["vm_config"]["code"]:
            out[name] = copy.deepcopy(typed)
            continue
        typed = copy.deepcopy(typed)
        config = typed["config"]
        vm = config["vm_config"]
        env = vm.get("environment_variables", {})
        env["key_values"] = {k: v for k, v in env.get("key_values", {}).items() if not k.startswith("ISTIO_META_")}
        if not env["key_values"]:
            env.pop("key_values")
        if not env:
            vm.pop("environment_variables", None)
        remote = vm["code"]["remote"]
        try:
            path = fetch(remote["http_uri"]["uri"], remote.get("sha256", ""))
        except Exception:  # noqa: BLE001 - any fetch failure: the default filter
            fail_open = config.get("failure_policy") == "FAIL_OPEN" or config.get("fail_open", False)
            out[name] = {"@type": RBAC_TYPE, "rules_stat_prefix": "wasm-default-allow"} if fail_open else deny_all()
            continue
        vm["code"] = {"local": {"filename": str(path)}}
        out[name] = typed
    return out


def ecds_files(resources: dict[str, dict], directory: Path, filters: list[dict]) -> list[dict]:
    """ADS -> one ECDS file per resource; returns `filters` (downstream and
    the router's upstream ones) pointing at the files."""
    import yaml

    directory.mkdir(parents=True, exist_ok=True)
    paths = {}
    for i, (name, typed) in enumerate(sorted(resources.items())):
        p = directory / f"ecds-{i}.yaml"
        p.write_text(yaml.safe_dump({"resources": [{"@type": ECDS_TYPE, "name": name, "typed_config": typed}]}))
        paths[name] = p

    def point(f: dict) -> dict:
        f = copy.deepcopy(f)
        if "config_discovery" in f:
            source = f["config_discovery"]["config_source"]
            source.pop("ads", None)
            source["path_config_source"] = {"path": str(paths[f["name"]])}
        if f.get("name") == ROUTER:
            ups = f["typed_config"].get("upstream_http_filters")
            if ups:
                f["typed_config"]["upstream_http_filters"] = [point(u) for u in ups]
        return f

    return [point(f) for f in filters]
