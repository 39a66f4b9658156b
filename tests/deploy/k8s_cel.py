"""Evaluates the CEL rules of a CRD schema (`x-kubernetes-validations`) the
way the API server does at admission, with a real CEL engine (cel-python).

A JSON Schema validator skips these rules: they hold the CRDs' cross-field
constraints (WasmPlugin: `value` only with INLINE, at most one of selector /
targetRef / targetRefs; EnvoyExtensionPolicy: targetRef(s) group and kind,
code.type vs code.image/http, ...). Running them here means a manifest that
`kubectl apply` would refuse fails the tests too.

Kubernetes adds library functions to CEL; the ones these schemas use
(`isURL`, `url(...).getScheme()`) are provided below with the Kubernetes
semantics: a URL must be an absolute URI or an absolute path.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

import celpy
from celpy import celtypes

_ENV = celpy.Environment()
_PROGRAMS: dict[str, object] = {}


def _is_url(s) -> celtypes.BoolType:
    text = str(s)
    try:
        parts = urlsplit(text)
    except ValueError:
        return celtypes.BoolType(False)
    if any(c.isspace() for c in text):
        return celtypes.BoolType(False)
    return celtypes.BoolType(bool(parts.scheme) or text.startswith("/"))


def _url(s) -> celtypes.StringType:
    if not _is_url(s):
        raise ValueError(f"url: not a valid URL: {s!r}")
    return celtypes.StringType(str(s))


def _get_scheme(u) -> celtypes.StringType:
    return celtypes.StringType(urlsplit(str(u)).scheme)


_FUNCTIONS = {"isURL": _is_url, "url": _url, "getScheme": _get_scheme}


def _program(rule: str):
    prg = _PROGRAMS.get(rule)
    if prg is None:
        prg = _ENV.program(_ENV.compile(rule), functions=_FUNCTIONS)
        _PROGRAMS[rule] = prg
    return prg


@dataclass
class Violation:
    path: str
    message: str
    rule: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}"


def evaluate(rule: str, value) -> bool:
    """True when the rule holds; an evaluation error counts as a refusal,
    as it does in the API server."""
    try:
        result = _program(rule).evaluate({"self": celpy.json_to_cel(value)})
    except Exception:  # noqa: BLE001 - any CEL error rejects the object
        return False
    return isinstance(result, celtypes.BoolType) and bool(result)


def violations(schema: dict, value, path: str = "$") -> list[Violation]:
    out: list[Violation] = []
    for v in schema.get("x-kubernetes-validations", []):
        if "oldSelf" in v["rule"]:
            continue  # transition rules judge updates, not a new object
        if not evaluate(v["rule"], value):
            out.append(Violation(path, v.get("message", v["rule"]), v["rule"]))
    for sub in schema.get("allOf", []):
        out += violations(sub, value, path)
    if isinstance(value, dict):
        props = schema.get("properties", {})
        extra = schema.get("additionalProperties")
        for key, item in value.items():
            if key in props:
                out += violations(props[key], item, f"{path}.{key}")
            elif isinstance(extra, dict):
                out += violations(extra, item, f"{path}.{key}")
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        for i, item in enumerate(value):
            out += violations(schema["items"], item, f"{path}[{i}]")
    return out
