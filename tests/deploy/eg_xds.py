"""What Envoy Gateway makes of deploy/envoy-gateway for the Gateway `edge`:
its Listener (with the EnvoyExtensionPolicy's Wasm filter), the route
configuration and clusters, then the EnvoyPatchPolicy's JSON patches on
them, ready for a real Envoy.

Follows the envoyproxy/gateway sources (main of 2026-08):

- internal/xds/translator/listener.go addHCMToXDSListener: an HTTPS Gateway
  listener becomes a filter chain of the xDS Listener named
  `<namespace>/<gateway>/<listener>` (an HTTP one the
  default_filter_chain), with the HCM (RDS route configuration of the same
  name, normalize_path, use_remote_address, ...).
- internal/xds/translator/httpfilters.go patchHCMWithFilters /
  newOrderedHTTPFilter: filters sorted by a fixed order (Lua 13+i,
  ext_proc 100+i, Wasm 200+i, router 310 and last).
- internal/xds/translator/wasm.go buildHCMWasmFilter / wasmConfig: the Wasm
  filter `envoy.filters.http.wasm/<policy>/wasm/<i>` sits in the HCM
  *disabled*, and each route of the policy's targets enables it in
  typed_per_filter_config with an empty `FilterConfig`; its code is remote,
  from Envoy Gateway's own HTTP server (cluster `wasm_cluster` of the
  bootstrap, unguessable path, `sha256` of the .wasm, 10 retries), vm_id =
  the IR name, root_id = rootID, configuration = the policy JSON, fail_open
  = failOpen, host_env_keys = env.hostKeys.
- internal/gatewayapi/envoyextensionpolicy.go buildWasm: Envoy Gateway pulls
  the OCI image, checks its manifest digest against `code.image.sha256`,
  extracts the module and serves it.
- internal/xds/filters/wellknown.go GenerateRouterFilter: the router with
  suppress_envoy_headers.
- internal/xds/translator/jsonpatch.go processJSONPatches and
  internal/utils/jsonpatch: each patch of an EnvoyPatchPolicy is applied to
  the protojson (proto field names) of the named resource; `jsonPath` is
  turned into JSON pointers (RFC 9535 JSONPath), `path` appended to each;
  `add` creates missing parents (EnsurePathExistsOnAdd); an `add` with an
  empty path adds a whole resource; a patch that fails is skipped and
  reported, the others still apply.

What is not modelled: Envoy Gateway's RDS/CDS delivery (the route
configuration and clusters go into a static bootstrap instead), and the
Gateway API objects themselves (Gateway, HTTPRoute, BackendTLSPolicy), whose
translation into the backend cluster is written out here.
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass, field

import jsonpath

WASM_TYPE = "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm"
HCM_TYPE = "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager"
ROUTER = "envoy.filters.http.router"
LISTENER_TYPE = "type.googleapis.com/envoy.config.listener.v3.Listener"
CLUSTER_TYPE = "type.googleapis.com/envoy.config.cluster.v3.Cluster"
ROUTE_TYPE = "type.googleapis.com/envoy.config.route.v3.RouteConfiguration"
WASM_CLUSTER = "wasm_cluster"


def wasm_ir_name(eep: dict, index: int) -> str:
    meta = eep["metadata"]
    return f"envoyextensionpolicy/{meta['namespace']}/{meta['name']}/wasm/{index}"


def wasm_filter_name(eep: dict, index: int) -> str:
    return f"envoy.filters.http.wasm/{wasm_ir_name(eep, index)}"


def wasm_filter(eep: dict, index: int, serving_url: str, module_sha256: str) -> dict:
    w = eep["spec"]["wasm"][index]
    vm = {
        "vm_id": wasm_ir_name(eep, index),
        "runtime": "envoy.wasm.runtime.v8",
        "code": {
            "remote": {
                "http_uri": {"uri": serving_url, "cluster": WASM_CLUSTER, "timeout": "10s"},
                "sha256": module_sha256,
                "retry_policy": {"num_retries": 10, "retry_back_off": {"base_interval": "1s", "max_interval": "30s"}},
            }
        },
    }
    if w.get("env", {}).get("hostKeys"):
        vm["environment_variables"] = {"host_env_keys": list(w["env"]["hostKeys"])}
    config = {
        "name": w.get("name", wasm_ir_name(eep, index)),
        "vm_config": vm,
        "configuration": {
            "@type": "type.googleapis.com/google.protobuf.StringValue",
            "value": json.dumps(w.get("config", ""), separators=(",", ":")) if "config" in w else "",
        },
        "fail_open": bool(w.get("failOpen", False)),
    }
    if w.get("rootID"):
        config["root_id"] = w["rootID"]
    return {"name": wasm_filter_name(eep, index), "disabled": True, "typed_config": {"@type": WASM_TYPE, "config": config}}


def _order(f: dict) -> int:
    """internal/xds/translator/httpfilters.go newOrderedHTTPFilter (the filters used here)."""
    name = f["name"]
    if name.startswith("envoy.filters.http.lua"):
        return 13 + int(name.rsplit("/", 1)[1])
    if name.startswith("envoy.filters.http.wasm"):
        return 200 + int(name.rsplit("/", 1)[1])
    if name == ROUTER:
        return 310
    return 50


@dataclass
class Gateway:
    """The xDS resources Envoy Gateway generates, as {type: {name: protojson}}."""

    resources: dict[str, dict[str, dict]] = field(default_factory=dict)

    def get(self, type_url: str, name: str) -> dict:
        return self.resources[type_url][name]


def translate(eep: dict, gateway_listener: str, downstream_tls: dict, routes: list[dict],
              serving_url: str, module_sha256: str) -> Gateway:
    """The Gateway's HTTPS listener `gateway_listener` with the policy's Wasm
    filters; `routes` are Envoy routes (match + route to a cluster) standing
    for the HTTPRoutes attached to it."""
    ns = eep["metadata"]["namespace"]
    (target,) = eep["spec"]["targetRefs"]
    name = f"{ns}/{target['name']}/{gateway_listener}"
    filters = [wasm_filter(eep, i, serving_url, module_sha256) for i in range(len(eep["spec"]["wasm"]))]
    filters.append({
        "name": ROUTER,
        "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router", "suppress_envoy_headers": True},
    })
    filters.sort(key=lambda f: (_order(f), f["name"]))
    hcm = {
        "@type": HCM_TYPE,
        "stat_prefix": "https-443",
        "rds": {"config_source": {"ads": {}, "resource_api_version": "V3"}, "route_config_name": name},
        "http_filters": filters,
        "use_remote_address": True,
        "normalize_path": True,
        "server_header_transformation": "PASS_THROUGH",
    }
    listener = {
        "name": name,
        "address": {"socket_address": {"address": "127.0.0.1", "port_value": 0}},
        "filter_chains": [{
            "name": name,
            "filters": [{"name": "envoy.filters.network.http_connection_manager", "typed_config": hcm}],
            "transport_socket": {"name": "envoy.transport_sockets.tls", "typed_config": downstream_tls},
        }],
    }
    enable = {
        f["name"]: {"@type": "type.googleapis.com/envoy.config.route.v3.FilterConfig", "config": {}}
        for f in filters if f.get("disabled")
    }
    route_config = {
        "name": name,
        "virtual_hosts": [{
            "name": f"{name}/*",
            "domains": ["*"],
            "routes": [dict(copy.deepcopy(r), typed_per_filter_config=copy.deepcopy(enable)) for r in routes],
        }],
        "ignore_port_in_host_matching": True,
    }
    return Gateway({LISTENER_TYPE: {name: listener}, ROUTE_TYPE: {name: route_config}, CLUSTER_TYPE: {}})


def _ensure_parents(doc, pointer: str) -> None:
    """EnsurePathExistsOnAdd: create the missing objects above `pointer`."""
    node = doc
    parts = [p.replace("~1", "/").replace("~0", "~") for p in pointer.split("/")[1:-1]]
    for part in parts:
        if isinstance(node, list):
            node = node[int(part)]
        else:
            node = node.setdefault(part, {})


def apply_patch_policy(gw: Gateway, epp: dict) -> list[str]:
    """Applies an EnvoyPatchPolicy in place; returns the errors Envoy
    Gateway would report in the policy's status (those patches skipped)."""
    errors = []
    for jp in epp["spec"]["jsonPatches"]:
        op = jp["operation"]
        if op["op"] == "add" and not op.get("path") and not op.get("jsonPath"):
            value = copy.deepcopy(op["value"])
            gw.resources.setdefault(jp["type"], {})[value["name"]] = value
            continue
        resource = gw.resources.get(jp["type"], {}).get(jp["name"])
        if resource is None:
            errors.append(f"resource not found: {jp['type']}/{jp['name']}")
            continue
        doc = json.loads(json.dumps(resource))
        if op.get("jsonPath"):
            pointers = [str(m.pointer()) + (op.get("path") or "") for m in jsonpath.finditer(op["jsonPath"], doc)]
            if not pointers:
                errors.append(f"no jsonPointers were found while evaluating the jsonPath: {op['jsonPath']!r}")
                continue
        else:
            pointers = [op["path"]]
        ok = True
        for pointer in pointers:
            try:
                patch = jsonpath.JSONPatch()
                if op["op"] == "add":
                    _ensure_parents(doc, pointer)
                    patch.add(pointer, copy.deepcopy(op["value"]))
                elif op["op"] == "replace":
                    patch.replace(pointer, copy.deepcopy(op["value"]))
                elif op["op"] == "remove":
                    patch.remove(pointer)
                elif op["op"] == "test":
                    patch.test(pointer, copy.deepcopy(op["value"]))
                elif op["op"] == "copy":
                    patch.copy(op["from"], pointer)
                elif op["op"] == "move":
                    patch.move(op["from"], pointer)
                doc = patch.apply(doc)
            except Exception as e:  # noqa: BLE001 - reported like Envoy Gateway does
                errors.append(f"unable to apply patch: op={op['op']} path={pointer} err: {e}")
                ok = False
        if ok:
            gw.resources[jp["type"]][jp["name"]] = doc
    return errors
