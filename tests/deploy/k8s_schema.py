"""Validates a manifest against its CRD schema the way `kubectl apply` (with
its default `--validate=strict`, i.e. server-side field validation Strict)
and the API server judge it.

The CRD schemas in deploy/schemas are the OpenAPI v3 schemas of the CRDs.
Some of them spell out `additionalProperties: false`; the newer ones (Istio
TrafficExtension and EnvoyFilter, Envoy Gateway EnvoyPatchPolicy and
EnvoyProxy) do not, because a CRD schema is *structural*: the API server
itself refuses (strict) or prunes (non-strict) every field a schema does not
declare, unless the schema says `x-kubernetes-preserve-unknown-fields: true`.
A plain JSON Schema validator would accept any unknown field there, so the
schema is made strict here first:

- every object schema that declares `properties` and neither
  `additionalProperties` nor `x-kubernetes-preserve-unknown-fields` refuses
  other fields (what the API server does for a structural schema);
- `apiVersion` and `kind` must be the CRD's, and `metadata` is checked as
  the API server checks ObjectMeta (name and namespace syntax, string maps;
  only the fields a manifest may set);
- lists marked `x-kubernetes-list-type: map` must not repeat a key, and
  `set` lists must not repeat an item (the API server refuses both).

The CRD's CEL rules are evaluated separately (k8s_cel.py). What this does
not model: defaulting, the `format` of strings (int32 ranges and the like),
and admission webhooks (Istio's validating webhook also rejects some
semantically wrong resources; it is not available offline).
"""

from __future__ import annotations

import copy
import json
from functools import lru_cache
from pathlib import Path

import jsonschema

# kind -> (apiVersion, schema file in deploy/schemas or shared/schemas)
CRDS = {
    "WasmPlugin": ("extensions.istio.io/v1alpha1", "istio-wasmplugin-v1alpha1.json"),
    "TrafficExtension": ("extensions.istio.io/v1alpha1", "istio-trafficextension-v1alpha1.json"),
    "EnvoyFilter": ("networking.istio.io/v1alpha3", "istio-envoyfilter-v1alpha3.json"),
    "EnvoyExtensionPolicy": ("gateway.envoyproxy.io/v1alpha1", "envoyextensionpolicy_v1alpha1.json"),
    "EnvoyPatchPolicy": ("gateway.envoyproxy.io/v1alpha1", "envoypatchpolicy_v1alpha1.json"),
    "EnvoyProxy": ("gateway.envoyproxy.io/v1alpha1", "envoyproxy_v1alpha1.json"),
}

_DNS1123_SUBDOMAIN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
_DNS1123_LABEL = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
_STRING_MAP = {"type": "object", "additionalProperties": {"type": "string"}}

# ObjectMeta as a manifest may write it (the rest is set by the API server).
OBJECT_META = {
    "type": "object",
    "additionalProperties": False,
    "required": ["name"],
    "properties": {
        "name": {"type": "string", "maxLength": 253, "pattern": _DNS1123_SUBDOMAIN},
        "generateName": {"type": "string"},
        "namespace": {"type": "string", "maxLength": 63, "pattern": _DNS1123_LABEL},
        "labels": _STRING_MAP,
        "annotations": _STRING_MAP,
        "finalizers": {"type": "array", "items": {"type": "string"}},
    },
}


def _strict(node):
    """A copy of the schema in which undeclared fields are refused."""
    if isinstance(node, list):
        return [_strict(n) for n in node]
    if not isinstance(node, dict):
        return node
    out = {}
    for key, value in node.items():
        if key in ("properties", "patternProperties", "definitions", "$defs"):
            out[key] = {k: _strict(v) for k, v in value.items()}
        elif key in ("items", "additionalProperties", "not", "allOf", "anyOf", "oneOf"):
            out[key] = _strict(value)
        else:
            # Other keywords (enum, default, x-kubernetes-validations, ...)
            # hold data, not schemas.
            out[key] = copy.deepcopy(value)
    if (
        "properties" in out
        and "additionalProperties" not in out
        and not out.get("x-kubernetes-preserve-unknown-fields")
    ):
        out["additionalProperties"] = False
    return out


@lru_cache(maxsize=None)
def strict_schema(schemas_dir: str, kind: str) -> dict:
    api_version, name = CRDS[kind]
    schema = _strict(json.loads((Path(schemas_dir) / name).read_text()))
    props = schema.setdefault("properties", {})
    props["apiVersion"] = {"type": "string", "enum": [api_version]}
    props["kind"] = {"type": "string", "enum": [kind]}
    props["metadata"] = OBJECT_META
    schema["required"] = sorted(set(schema.get("required", [])) | {"apiVersion", "kind", "metadata"})
    schema["additionalProperties"] = False
    return schema


def _list_errors(schema: dict, value, path: str) -> list[str]:
    """x-kubernetes-list-type map/set: duplicates are refused by the API server."""
    out: list[str] = []
    if not isinstance(schema, dict):
        return out
    if isinstance(value, list):
        kind = schema.get("x-kubernetes-list-type")
        if kind == "map":
            keys = schema.get("x-kubernetes-list-map-keys", [])
            seen = set()
            for item in value:
                if isinstance(item, dict):
                    key = tuple(json.dumps(item.get(k), sort_keys=True) for k in keys)
                    if key in seen:
                        out.append(f"{path}: duplicate entry for list-map key {dict(zip(keys, key))}")
                    seen.add(key)
        elif kind == "set":
            items = [json.dumps(i, sort_keys=True) for i in value]
            if len(items) != len(set(items)):
                out.append(f"{path}: duplicate item in a set")
        for i, item in enumerate(value):
            out += _list_errors(schema.get("items", {}), item, f"{path}[{i}]")
    elif isinstance(value, dict):
        props = schema.get("properties", {})
        extra = schema.get("additionalProperties")
        for key, item in value.items():
            sub = props.get(key, extra if isinstance(extra, dict) else None)
            if sub is not None:
                out += _list_errors(sub, item, f"{path}.{key}")
    return out


def errors(schemas_dir: Path, doc: dict) -> list[str]:
    """Everything the strict schema refuses in `doc` (empty: accepted)."""
    kind = doc.get("kind")
    if kind not in CRDS:
        return [f"kind {kind!r} has no CRD schema here"]
    schema = strict_schema(str(schemas_dir), kind)
    validator = jsonschema.Draft202012Validator(schema)
    out = [
        f"$.{'.'.join(str(p) for p in e.absolute_path)}: {e.message}"
        for e in sorted(validator.iter_errors(doc), key=lambda e: list(map(str, e.absolute_path)))
    ]
    return out + _list_errors(schema, doc, "$")
