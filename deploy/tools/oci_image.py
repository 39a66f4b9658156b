#!/usr/bin/env python3
"""Build, check and unpack the dpp-guard OCI image without a container engine.

The image is the Wasm image "compat" variant: ONE layer of media type
`application/vnd.oci.image.layer.v1.tar+gzip` holding `plugin.wasm`, plus the
manifest annotation `module.wasm.image/variant=compat`.

Why compat and not the 2-layer "oci" artifact variant:
- Istio tries compat first and accepts it from every version that supports
  OCI (older releases want exactly one layer, newer ones read the last layer:
  one layer satisfies both). Envoy Gateway's fetcher is a port of Istio's and
  accepts the same image.
- It uses only standard OCI media types, so every registry, mirror and
  scanner (and skopeo) handles it; custom artifact media types are still
  refused or mangled by some registries, and the "oci" variant's
  exactly-2-layers rule has broken many single-layer artifacts.

Reproducible: the same .wasm bytes always give the same manifest digest. The
tar entry has mtime 0, uid/gid 0, no user/group names, mode 0644, ustar
format; the gzip header has mtime 0 and no file name; JSON is serialized
with sorted keys and no whitespace; nothing time- or host-dependent goes in.
(The gzip stream itself is produced by zlib at level 9; zlib's deflate output
has been stable for years, but a different zlib build is the one input that
could, in principle, change the layer bytes.)

Standard library only, so `make oci` needs no virtualenv.

Usage:
  oci_image.py build --wasm FILE --out DIR --tag TAG   prints the manifest digest
      [--digest-file F] [--module-digest-file G]       and writes it / plugin.wasm's sha256 to files
  oci_image.py check DIR[:TAG]                          Istio's acceptance rules
  oci_image.py extract DIR[:TAG] OUT                    writes plugin.wasm bytes to OUT
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import io
import json
import os
import sys
import tarfile
from dataclasses import dataclass
from pathlib import Path

MT_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MT_INDEX = "application/vnd.oci.image.index.v1+json"
MT_CONFIG = "application/vnd.oci.image.config.v1+json"
MT_LAYER_TGZ = "application/vnd.oci.image.layer.v1.tar+gzip"
MT_DOCKER_LAYER_TGZ = "application/vnd.docker.image.rootfs.diff.tar.gzip"
MT_DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
MT_WASM_LAYER = "application/vnd.module.wasm.content.layer.v1+wasm"
VARIANT_ANNOTATION = "module.wasm.image/variant"
REF_NAME = "org.opencontainers.image.ref.name"
WASM_MAGIC = b"\0asm"
PLUGIN_FILE = "plugin.wasm"
# Istio's default cap on a fetched module (WASM_MODULE_MAX_SIZE... 256 MiB).
MAX_MODULE_BYTES = 256 * 1024 * 1024


class ImageError(Exception):
    """The image breaks one of the rules a mesh applies when it fetches it."""


def canonical_json(obj) -> bytes:
    # Sorted keys and no whitespace: the digest depends on content only.
    return json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()


def sha256_digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def layer_tar_gz(wasm: bytes) -> tuple[bytes, bytes]:
    """Returns (uncompressed tar, gzip of it), both byte-for-byte reproducible."""
    tar_buf = io.BytesIO()
    with tarfile.open(fileobj=tar_buf, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        info = tarfile.TarInfo(PLUGIN_FILE)
        info.size = len(wasm)
        info.mtime = 0
        info.mode = 0o644
        info.uid = info.gid = 0
        info.uname = info.gname = ""
        info.type = tarfile.REGTYPE
        tar.addfile(info, io.BytesIO(wasm))
    tar_bytes = tar_buf.getvalue()
    gz_buf = io.BytesIO()
    # filename="" and mtime=0 keep the gzip header free of build-time data.
    with gzip.GzipFile(filename="", mode="wb", fileobj=gz_buf, compresslevel=9, mtime=0) as gz:
        gz.write(tar_bytes)
    return tar_bytes, gz_buf.getvalue()


@dataclass
class Built:
    digest: str  # "sha256:<hex>" of the manifest bytes
    manifest: bytes
    tag: str

    @property
    def hex(self) -> str:
        return self.digest.split(":", 1)[1]


def write_blob(out: Path, data: bytes) -> str:
    digest = sha256_digest(data)
    path = out / "blobs" / "sha256" / digest.split(":", 1)[1]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return digest


def build(wasm: bytes, out: Path, tag: str) -> Built:
    """Writes an OCI image layout at `out` (replacing what was there)."""
    if not wasm.startswith(WASM_MAGIC):
        raise ImageError("input is not a Wasm module (does not start with \\0asm)")
    if out.exists():
        # A stale blob left from another build would not change the digest but
        # would make the layout confusing to inspect; start clean.
        for p in sorted(out.rglob("*"), reverse=True):
            p.unlink() if p.is_file() else p.rmdir()
    out.mkdir(parents=True, exist_ok=True)
    tar_bytes, tgz = layer_tar_gz(wasm)
    layer_digest = write_blob(out, tgz)
    config = {
        # GOARCH/GOOS spelling of WASI preview 1: what the module targets.
        "architecture": "wasm",
        "os": "wasip1",
        "rootfs": {"type": "layers", "diff_ids": [sha256_digest(tar_bytes)]},
        "config": {},
    }
    config_bytes = canonical_json(config)
    config_digest = write_blob(out, config_bytes)
    manifest = {
        "schemaVersion": 2,
        "mediaType": MT_MANIFEST,
        "config": {"mediaType": MT_CONFIG, "digest": config_digest, "size": len(config_bytes)},
        "layers": [{"mediaType": MT_LAYER_TGZ, "digest": layer_digest, "size": len(tgz)}],
        "annotations": {VARIANT_ANNOTATION: "compat"},
    }
    manifest_bytes = canonical_json(manifest)
    manifest_digest = write_blob(out, manifest_bytes)
    index = {
        "schemaVersion": 2,
        "mediaType": MT_INDEX,
        "manifests": [
            {
                "mediaType": MT_MANIFEST,
                "digest": manifest_digest,
                "size": len(manifest_bytes),
                "annotations": {REF_NAME: tag},
            }
        ],
    }
    (out / "index.json").write_bytes(canonical_json(index))
    (out / "oci-layout").write_bytes(canonical_json({"imageLayoutVersion": "1.0.0"}))
    return Built(digest=manifest_digest, manifest=manifest_bytes, tag=tag)


# --- reading an image layout back -------------------------------------------


def split_ref(ref: str) -> tuple[Path, str | None]:
    """`DIR` or `DIR:TAG` (like skopeo's oci: transport)."""
    if ":" in ref and not Path(ref).exists():
        d, tag = ref.rsplit(":", 1)
        return Path(d), tag
    return Path(ref), None


def read_blob(layout: Path, digest: str) -> bytes:
    algo, _, hexd = digest.partition(":")
    if algo != "sha256":
        raise ImageError(f"unsupported digest algorithm {algo!r}")
    data = (layout / "blobs" / "sha256" / hexd).read_bytes()
    if sha256_digest(data) != digest:
        raise ImageError(f"blob {digest} does not match its digest")
    return data


def manifest_of(layout: Path, tag: str | None) -> tuple[str, bytes]:
    index = json.loads((layout / "index.json").read_bytes())
    entries = index.get("manifests", [])
    if tag is not None:
        entries = [m for m in entries if m.get("annotations", {}).get(REF_NAME) == tag]
    if len(entries) != 1:
        raise ImageError(f"expected exactly one manifest for tag {tag!r} in {layout}, found {len(entries)}")
    digest = entries[0]["digest"]
    return digest, read_blob(layout, digest)


def extract_plugin_from_tgz(blob: bytes) -> bytes:
    """What the mesh does with the compat layer: gunzip, walk the tar, take
    the first regular file whose base name is plugin.wasm."""
    try:
        raw = gzip.decompress(blob)
    except (OSError, EOFError) as e:
        raise ImageError(f"layer is not gzip (uncompressed tar layers are rejected): {e}") from e
    try:
        with tarfile.open(fileobj=io.BytesIO(raw), mode="r:") as tar:
            for member in tar:
                if os.path.basename(member.name) == PLUGIN_FILE and member.isfile():
                    f = tar.extractfile(member)
                    if f is not None:
                        return f.read()
    except tarfile.TarError as e:
        raise ImageError(f"layer is not a tar archive: {e}") from e
    raise ImageError(f"{PLUGIN_FILE} not found in the layer")


def istio_accepts(layout: Path, tag: str | None = None) -> tuple[str, bytes]:
    """Applies the rules Istio's image fetcher (and Envoy Gateway's port of
    it) applies to a fetched image; returns (manifest digest, module bytes)
    or raises ImageError naming the broken rule."""
    digest, manifest_bytes = manifest_of(layout, tag)
    manifest = json.loads(manifest_bytes)
    if manifest.get("schemaVersion") != 2:
        raise ImageError("manifest schemaVersion must be 2")
    media_type = manifest.get("mediaType", MT_MANIFEST)
    layers = manifest.get("layers") or []
    if not layers:
        raise ImageError("number of layers must be greater than zero")
    errors = []
    module = None
    if media_type == MT_DOCKER_MANIFEST:
        last = layers[-1]
        if last.get("mediaType") != MT_DOCKER_LAYER_TGZ:
            raise ImageError(f"docker image: invalid layer media type {last.get('mediaType')}")
        module = extract_plugin_from_tgz(read_blob(layout, last["digest"]))
    elif media_type == MT_MANIFEST:
        # compat variant: the LAST layer must be OCI tar+gzip with plugin.wasm.
        last = layers[-1]
        if last.get("mediaType") != MT_LAYER_TGZ:
            errors.append(f"compat variant: invalid layer media type {last.get('mediaType')} (expect {MT_LAYER_TGZ})")
        else:
            try:
                module = extract_plugin_from_tgz(read_blob(layout, last["digest"]))
            except ImageError as e:
                errors.append(f"compat variant: {e}")
        if module is None:
            # oci variant: exactly two layers, one of them the raw module.
            if len(layers) != 2:
                errors.append(f"oci variant: number of layers must be 2 but got {len(layers)}")
            else:
                wasm_layers = [l for l in layers if l.get("mediaType") == MT_WASM_LAYER]
                if not wasm_layers:
                    errors.append(f"oci variant: no layer of type {MT_WASM_LAYER}")
                else:
                    module = read_blob(layout, wasm_layers[0]["digest"])
    else:
        raise ImageError(f"unsupported manifest media type {media_type}")
    if module is None:
        raise ImageError("invalid image format: " + "; ".join(errors))
    if not module.startswith(WASM_MAGIC):
        raise ImageError("module does not start with \\0asm")
    if len(module) > MAX_MODULE_BYTES:
        raise ImageError(f"module is {len(module)} bytes, over the {MAX_MODULE_BYTES}-byte cap")
    return digest, module


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    b = sub.add_parser("build")
    b.add_argument("--wasm", required=True, type=Path)
    b.add_argument("--out", required=True, type=Path)
    b.add_argument("--tag", required=True)
    b.add_argument("--digest-file", type=Path, help="also write the manifest digest (sha256:...) here")
    b.add_argument(
        "--module-digest-file", type=Path, help="also write the sha256 of plugin.wasm itself (sha256:...) here"
    )
    c = sub.add_parser("check")
    c.add_argument("ref")
    x = sub.add_parser("extract")
    x.add_argument("ref")
    x.add_argument("out", type=Path)
    args = p.parse_args(argv)
    try:
        if args.cmd == "build":
            wasm = args.wasm.read_bytes()
            built = build(wasm, args.out, args.tag)
            if args.digest_file:
                args.digest_file.write_text(built.digest + "\n")
            if args.module_digest_file:
                args.module_digest_file.write_text(sha256_digest(wasm) + "\n")
            print(built.digest)
        elif args.cmd == "check":
            digest, module = istio_accepts(*split_ref(args.ref))
            print(f"{digest} ok: compat image, {PLUGIN_FILE} {len(module)} bytes")
        elif args.cmd == "extract":
            _, module = istio_accepts(*split_ref(args.ref))
            args.out.write_bytes(module)
    except (ImageError, OSError, ValueError, KeyError) as e:
        print(f"oci_image: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
