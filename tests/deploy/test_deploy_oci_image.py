"""The OCI image `make oci` builds: reproducible, accepted by Istio's rules,
pinned by the manifests, and intact through a real registry."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import re
import socket
import subprocess
import tarfile
import time
import urllib.request
from pathlib import Path

import pytest

import oci_image
from deploy_support import DEPLOY, ROOT, ensure_commands, load_one, manifest_paths, tool
from envoy_run import stop_process

TAG = re.search(r'^version = "(.+)"', (ROOT / "Cargo.toml").read_text(), re.M).group(1)


def tree(d: Path) -> dict[str, bytes]:
    return {p.relative_to(d).as_posix(): p.read_bytes() for p in sorted(d.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def image(tmp_path_factory, wasm_bytes):
    out = tmp_path_factory.mktemp("image") / "dpp-guard"
    return out, oci_image.build(wasm_bytes, out, TAG)


def manifest_json(layout: Path) -> dict:
    _, raw = oci_image.manifest_of(layout, TAG)
    return json.loads(raw)


# --- reproducibility ---------------------------------------------------------


def test_same_wasm_gives_the_same_digest_and_bytes(tmp_path, wasm_bytes, image):
    layout, built = image
    again = oci_image.build(wasm_bytes, tmp_path / "again", TAG)
    assert again.digest == built.digest
    assert tree(tmp_path / "again") == tree(layout)


def test_other_wasm_gives_another_digest(tmp_path, wasm_bytes, image):
    _, built = image
    other = oci_image.build(wasm_bytes + b"\0", tmp_path / "other", TAG)
    assert other.digest != built.digest


def test_layer_carries_no_build_time_or_host_data(image):
    layout, _ = image
    (layer,) = manifest_json(layout)["layers"]
    blob = oci_image.read_blob(layout, layer["digest"])
    assert blob[:2] == b"\x1f\x8b"
    assert blob[4:8] == b"\0\0\0\0", "gzip header mtime must be 0"
    assert not blob[3] & 0x08, "gzip header must not carry a file name"
    with tarfile.open(fileobj=io.BytesIO(gzip.decompress(blob))) as tar:
        (member,) = tar.getmembers()
    assert (member.name, member.mtime, member.uid, member.gid, member.uname, member.gname, member.mode) == (
        "plugin.wasm", 0, 0, 0, "", "", 0o644,
    )


# --- Istio's acceptance rules -------------------------------------------------


def test_image_meets_istio_acceptance_rules(image, wasm_bytes):
    layout, built = image
    m = manifest_json(layout)
    assert m["mediaType"] == oci_image.MT_MANIFEST
    assert m["config"]["mediaType"] == oci_image.MT_CONFIG
    assert [l["mediaType"] for l in m["layers"]] == [oci_image.MT_LAYER_TGZ], "compat: one tar+gzip layer"
    assert m["annotations"] == {"module.wasm.image/variant": "compat"}
    digest, module = oci_image.istio_accepts(layout, TAG)
    assert digest == built.digest
    assert module == wasm_bytes
    assert module[:4] == b"\0asm"


def _layout(tmp: Path, layers: list[tuple[str, bytes]], media_type: str = oci_image.MT_MANIFEST) -> Path:
    """A hand-made image layout with the given (mediaType, blob) layers."""
    cfg = oci_image.canonical_json({"architecture": "wasm", "os": "wasip1"})
    manifest = {
        "schemaVersion": 2,
        "mediaType": media_type,
        "config": {"mediaType": oci_image.MT_CONFIG, "digest": oci_image.write_blob(tmp, cfg), "size": len(cfg)},
        "layers": [{"mediaType": mt, "digest": oci_image.write_blob(tmp, b), "size": len(b)} for mt, b in layers],
    }
    raw = oci_image.canonical_json(manifest)
    index = {"schemaVersion": 2, "manifests": [{"mediaType": media_type, "digest": oci_image.write_blob(tmp, raw), "size": len(raw)}]}
    (tmp / "index.json").write_bytes(oci_image.canonical_json(index))
    return tmp


def _tgz(name: str, data: bytes, compress: bool = True) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        info = tarfile.TarInfo(name)
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    return gzip.compress(buf.getvalue()) if compress else buf.getvalue()


WASM_STUB = b"\0asm\x01\0\0\0"
REFUSED = {
    "uncompressed-tar-layer": ([(oci_image.MT_LAYER_TGZ, _tgz("plugin.wasm", WASM_STUB, compress=False))], "not gzip"),
    "tar-media-type": ([("application/vnd.oci.image.layer.v1.tar", _tgz("plugin.wasm", WASM_STUB))], "invalid layer media type"),
    "no-plugin-wasm": ([(oci_image.MT_LAYER_TGZ, _tgz("filter.wasm", WASM_STUB))], "plugin.wasm not found"),
    "not-wasm": ([(oci_image.MT_LAYER_TGZ, _tgz("plugin.wasm", b"#!/bin/sh\n"))], "does not start with"),
    "oci-variant-single-layer": ([(oci_image.MT_WASM_LAYER, WASM_STUB)], "must be 2 but got 1"),
    "compat-not-last-layer": (
        [(oci_image.MT_LAYER_TGZ, _tgz("plugin.wasm", WASM_STUB)), (oci_image.MT_LAYER_TGZ, _tgz("README", b"x"))],
        "plugin.wasm not found",
    ),
}


@pytest.mark.parametrize("case", sorted(REFUSED))
def test_istio_rules_refuse_bad_images(tmp_path, case):
    layers, why = REFUSED[case]
    with pytest.raises(oci_image.ImageError, match=why):
        oci_image.istio_accepts(_layout(tmp_path, layers))


def test_istio_rules_accept_the_two_layer_oci_variant(tmp_path):
    # The checker is not a blanket "compat only": Istio also takes this form.
    layers = [("application/vnd.module.wasm.config.v1+json", b"{}"), (oci_image.MT_WASM_LAYER, WASM_STUB)]
    _, module = oci_image.istio_accepts(_layout(tmp_path, layers))
    assert module == WASM_STUB


# --- make oci and the pins ----------------------------------------------------


IMAGE_REF = re.compile(r"(^oci://|^)registry\.example\.com/dpp-guard/dpp-guard:")


def pinned_digests(root: Path) -> dict[str, dict[str, str]]:
    """Every place a manifest pins the build, read structurally:
    {"image": {where: hex}, "module": {where: hex}}."""
    pins: dict[str, dict[str, str]] = {"image": {}, "module": {}}
    for p in manifest_paths(root):
        doc = load_one(p)
        rel = p.relative_to(root).as_posix()
        kind = doc["kind"]
        if kind == "WasmPlugin":
            pins["image"][f"{rel}:spec.sha256"] = doc["spec"]["sha256"]
        elif kind == "TrafficExtension" and "wasm" in doc["spec"]:
            pins["image"][f"{rel}:spec.wasm.sha256"] = doc["spec"]["wasm"]["sha256"]
        elif kind == "EnvoyExtensionPolicy":
            for i, w in enumerate(doc["spec"]["wasm"]):
                pins["image"][f"{rel}:spec.wasm[{i}].code.image.sha256"] = w["code"]["image"]["sha256"]
        elif kind == "EnvoyFilter":
            # istio-agent fetches these oci:// modules: image digests.
            for i, patch in enumerate(doc["spec"]["configPatches"]):
                code = patch["patch"]["value"].get("typed_config", {}).get("config", {}).get("vm_config", {}).get("code", {})
                if "remote" in code:
                    pins["image"][f"{rel}:configPatches[{i}].remote.sha256"] = code["remote"]["sha256"]
        elif kind == "EnvoyPatchPolicy":
            # Envoy fetches these over HTTPS itself: plugin.wasm's own sha256.
            for i, jp in enumerate(doc["spec"]["jsonPatches"]):
                for j, f in enumerate(_as_list(jp["operation"].get("value"))):
                    code = f.get("typed_config", {}).get("config", {}).get("vm_config", {}).get("code", {}) if isinstance(f, dict) else {}
                    if "remote" in code:
                        pins["module"][f"{rel}:jsonPatches[{i}].value[{j}].remote.sha256"] = code["remote"]["sha256"]
    return pins


def _as_list(v) -> list:
    return v if isinstance(v, list) else [v]


def mismatched(root: Path, digest: str, module_digest: str) -> dict[str, str]:
    want = {"image": digest.removeprefix("sha256:"), "module": module_digest.removeprefix("sha256:")}
    return {where: d for kind, found in pinned_digests(root).items() for where, d in found.items() if d != want[kind]}


def _walk(node, parent=None):
    if isinstance(node, dict):
        yield node, parent
        for v in node.values():
            yield from _walk(v, node)
    elif isinstance(node, list):
        for v in node:
            yield from _walk(v, parent)


def test_every_reference_to_the_build_is_pinned_where_pin_py_rewrites_it():
    """A manifest that names the image or the module anywhere must pin it
    next to the reference, on a line pin.py rewrites; so a new manifest
    cannot escape `make oci-pin` and `make check-pin`."""
    import pin

    structural = pinned_digests(DEPLOY)
    refs = 0
    for p in manifest_paths():
        doc = load_one(p)
        text = p.read_text()
        for node, parent in _walk(doc):
            for key in ("url", "uri"):
                value = node.get(key)
                if not isinstance(value, str):
                    continue
                if IMAGE_REF.search(value):
                    kind = "image"
                elif value.endswith("/plugin.wasm"):
                    kind = "module"
                else:
                    continue
                refs += 1
                holder = node if "sha256" in node else parent if parent and "sha256" in parent else None
                assert holder is not None, f"{p}: {value} has no sha256 pin beside it"
                assert holder["sha256"] in pin.pins(text, kind), f"{p}: the pin of {value} is not a {kind} pin line"
        assert sorted(pin.pins(text, "image")) == sorted(
            h for w, h in structural["image"].items() if w.startswith(p.relative_to(DEPLOY).as_posix() + ":")
        ), p
        assert sorted(pin.pins(text, "module")) == sorted(
            h for w, h in structural["module"].items() if w.startswith(p.relative_to(DEPLOY).as_posix() + ":")
        ), p
    assert refs == len(structural["image"]) + len(structural["module"])


def test_make_oci_builds_this_image_and_pins_it_everywhere(make_oci, image, wasm_bytes):
    _, built = image
    assert (make_oci / "digest").read_text().strip() == built.digest
    module = "sha256:" + hashlib.sha256(wasm_bytes).hexdigest()
    assert (make_oci / "module-digest").read_text().strip() == module
    assert (make_oci / "plugin.wasm").read_bytes() == wasm_bytes, "the module to publish is the image's plugin.wasm"
    oci_image.istio_accepts(make_oci / "dpp-guard", TAG)
    pins = pinned_digests(make_oci / "deploy")
    # WasmPlugins and wasm TrafficExtensions, EnvoyExtensionPolicy, EnvoyFilter;
    # the EnvoyPatchPolicy's upstream guard.
    assert len(pins["image"]) == len(pinned_digests(DEPLOY)["image"]) >= 7, pins
    assert len(pins["module"]) == 1, pins
    assert mismatched(make_oci / "deploy", built.digest, module) == {}


def test_pinned_copies_differ_from_deploy_only_in_the_digest(make_oci):
    pin_line = re.compile(r"^(\s*sha256:\s*)[0-9a-f]{64}(\s*(#.*)?)$")
    for p in manifest_paths():
        rendered = (make_oci / "deploy" / p.relative_to(DEPLOY)).read_text().splitlines()
        committed = p.read_text().splitlines()
        assert [pin_line.sub(r"\1X\2", l) for l in rendered] == [pin_line.sub(r"\1X\2", l) for l in committed], p


def test_committed_manifests_pin_one_build_by_the_crate_version():
    pins = pinned_digests(DEPLOY)
    for kind in ("image", "module"):
        assert len(set(pins[kind].values())) == 1, f"deploy/ pins several {kind}s: {pins[kind]}"
        assert re.fullmatch(r"[a-f0-9]{64}", next(iter(pins[kind].values())))
    for p in manifest_paths():
        for node, _ in _walk(load_one(p)):
            for key in ("url", "uri"):
                if isinstance(node.get(key), str) and IMAGE_REF.search(node[key]):
                    assert node[key].endswith(f":{TAG}"), f"{p}: the image tag follows the workspace version"
                if isinstance(node.get(key), str) and node[key].endswith("/plugin.wasm"):
                    assert f"/{TAG}/" in node[key], f"{p}: the module's URL names the workspace version"


def test_a_digest_mismatch_is_caught(make_oci, image, tmp_path, wasm_bytes):
    _, built = image
    module = "sha256:" + hashlib.sha256(wasm_bytes).hexdigest()
    rendered = make_oci / "deploy"
    bad = tmp_path / "deploy"
    for p in manifest_paths(rendered):
        dest = bad / p.relative_to(rendered)
        dest.parent.mkdir(parents=True, exist_ok=True)
        text = p.read_text()
        if p.name == "envoyextensionpolicy.yaml":
            text = text.replace(built.hex, "0" * 64)
        if p.name == "envoypatchpolicy.yaml":
            text = text.replace(module.removeprefix("sha256:"), "1" * 64)
        dest.write_text(text)
    assert sorted(mismatched(bad, built.digest, module)) == [
        "envoy-gateway/envoyextensionpolicy.yaml:spec.wasm[0].code.image.sha256",
        "envoy-gateway/envoypatchpolicy.yaml:jsonPatches[3].value[0].remote.sha256",
    ]
    check = ["python3", str(DEPLOY / "tools" / "pin.py"), "--digest", built.digest, "--module-digest", module, "--check"]
    ok = subprocess.run([*check, "--root", str(rendered)], capture_output=True, text=True)
    assert ok.returncode == 0, ok.stderr
    res = subprocess.run([*check, "--root", str(bad)], capture_output=True, text=True)
    assert res.returncode == 1
    assert "envoyextensionpolicy.yaml" in res.stderr and "envoypatchpolicy.yaml" in res.stderr
    # The module digest is required where module pins exist: no silent skip.
    res = subprocess.run(["python3", str(DEPLOY / "tools" / "pin.py"), "--digest", built.digest, "--check"],
                         capture_output=True, text=True)
    assert res.returncode == 1 and "--module-digest" in res.stderr


# --- a real registry round trip ----------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def registry(tmp_path):
    registry_bin, _ = ensure_commands("docker-registry", "skopeo")
    port = _free_port()
    cfg = tmp_path / "registry.yml"
    cfg.write_text(
        "version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n"
        f"    rootdirectory: {tmp_path / 'data'}\nhttp:\n  addr: 127.0.0.1:{port}\n"
    )
    log = open(tmp_path / "registry.log", "wb")
    proc = subprocess.Popen([registry_bin, "serve", str(cfg)], stdout=log, stderr=subprocess.STDOUT)
    try:
        # Readiness, not timing: bounded polling until /v2/ answers.
        for _ in range(100):
            if proc.poll() is not None:
                pytest.fail(f"docker-registry exited: {(tmp_path / 'registry.log').read_text()}")
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/v2/", timeout=1).read()
                break
            except OSError:
                time.sleep(0.1)
        else:
            pytest.fail("docker-registry did not answer on /v2/")
        yield f"127.0.0.1:{port}"
    finally:
        stop_process(proc)
        log.close()


def test_registry_round_trip_keeps_digest_and_module(registry, image, wasm_bytes, tmp_path):
    layout, built = image
    skopeo = tool("skopeo")
    ref = f"docker://{registry}/dpp-guard/dpp-guard:{TAG}"
    subprocess.run(
        [skopeo, "copy", "-q", "--preserve-digests", "--dest-tls-verify=false", f"oci:{layout}:{TAG}", ref],
        check=True,
    )
    raw = subprocess.run(
        [skopeo, "inspect", "--raw", "--tls-verify=false", ref], check=True, capture_output=True
    ).stdout
    # What Istio compares `sha256` with: the digest of the manifest as served.
    assert "sha256:" + hashlib.sha256(raw).hexdigest() == built.digest
    pulled = tmp_path / "pulled"
    subprocess.run([skopeo, "copy", "-q", "--src-tls-verify=false", ref, f"oci:{pulled}:pulled"], check=True)
    digest, module = oci_image.istio_accepts(pulled, "pulled")
    assert digest == built.digest
    assert module == wasm_bytes
