#!/usr/bin/env python3
"""Point the manifests under deploy/ at one build of dpp-guard.

Two kinds of pin, both YAML lines `sha256: <64 hex>`; nothing else in
deploy/ has that shape:

- image pins (no marker): the OCI image MANIFEST digest, which Istio and
  Envoy Gateway compare with the image they pull (WasmPlugin and
  TrafficExtension `sha256`, EnvoyExtensionPolicy `code.image.sha256`, the
  upstream guard EnvoyFilter's `remote.sha256`, which istio-agent checks);
- module pins, marked `# pin: module` at the end of the line: the sha256 of
  plugin.wasm itself, which Envoy checks when it fetches the module over
  HTTPS (the Envoy Gateway upstream guard in envoypatchpolicy.yaml).

Rewriting those lines only keeps comments and layout intact (a YAML round
trip would drop them) and needs no third-party module.

Usage:
  pin.py --digest sha256:HEX --module-digest sha256:HEX --out DIR   pinned copies of deploy/ under DIR
  pin.py --digest-file F --module-digest-file G --in-place          rewrite deploy/ itself (a release step: commit it)
  pin.py --digest-file F --module-digest-file G --check             exit 1 unless deploy/ pins that build everywhere
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

DEPLOY = Path(__file__).resolve().parent.parent
PIN_LINE = re.compile(r"^(?P<lead>\s*sha256:\s*)(?P<q>[\"']?)(?P<hex>[0-9a-f]{64})(?P=q)(?P<tail>\s*(#.*)?)$")
MODULE_MARK = re.compile(r"#\s*pin:\s*module\b")
DIGEST = re.compile(r"^sha256:(?P<hex>[0-9a-f]{64})$")
IMAGE, MODULE = "image", "module"


def manifests(root: Path = DEPLOY) -> list[Path]:
    """The Kubernetes manifests (tools/ holds none)."""
    return sorted(p for p in root.rglob("*.yaml") if "tools" not in p.relative_to(root).parts)


def kind_of(m: re.Match) -> str:
    return MODULE if MODULE_MARK.search(m.group("tail") or "") else IMAGE


def pins(text: str, kind: str | None = None) -> list[str]:
    """The pinned hex digests in `text` (of one kind, or all)."""
    return [
        m.group("hex")
        for line in text.splitlines()
        if (m := PIN_LINE.match(line)) and (kind is None or kind_of(m) == kind)
    ]


def repin(text: str, digests: dict[str, str]) -> str:
    """Rewrites every pin to digests[its kind] (hex)."""
    out = []
    for line in text.splitlines(keepends=True):
        body = line.rstrip("\n")
        m = PIN_LINE.match(body)
        if m:
            body = f"{m.group('lead')}{m.group('q')}{digests[kind_of(m)]}{m.group('q')}{m.group('tail')}"
            line = body + ("\n" if line.endswith("\n") else "")
        out.append(line)
    return "".join(out)


def parse_digest(s: str) -> str:
    m = DIGEST.match(s.strip())
    if not m:
        raise SystemExit(f"pin: not a sha256 manifest digest: {s!r}")
    return m.group("hex")


def _digest_arg(value: str | None, file: Path | None, what: str, p: argparse.ArgumentParser) -> str | None:
    if value and file:
        p.error(f"give at most one of --{what}, --{what}-file")
    if file:
        return parse_digest(file.read_text())
    return parse_digest(value) if value else None


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--digest", help="sha256:HEX of the OCI image manifest")
    p.add_argument("--digest-file", type=Path, help="file holding it (written by oci_image.py build)")
    p.add_argument("--module-digest", help="sha256:HEX of plugin.wasm")
    p.add_argument("--module-digest-file", type=Path, help="file holding it (written by oci_image.py build)")
    p.add_argument("--root", type=Path, default=DEPLOY, help="the manifests' directory (default: deploy/)")
    mode = p.add_mutually_exclusive_group(required=True)
    mode.add_argument("--out", type=Path)
    mode.add_argument("--in-place", action="store_true")
    mode.add_argument("--check", action="store_true")
    args = p.parse_args(argv)
    image = _digest_arg(args.digest, args.digest_file, "digest", p)
    module = _digest_arg(args.module_digest, args.module_digest_file, "module-digest", p)
    if image is None:
        p.error("give one of --digest, --digest-file")
    digests = {IMAGE: image, MODULE: module}
    stale = []
    total = {IMAGE: 0, MODULE: 0}
    for path in manifests(args.root):
        text = path.read_text()
        for kind in (IMAGE, MODULE):
            found = pins(text, kind)
            total[kind] += len(found)
            if found and digests[kind] is None:
                print(f"pin: {path.relative_to(args.root)} has module pins: give --module-digest(-file)", file=sys.stderr)
                return 1
            if args.check:
                stale += [f"{path.relative_to(args.root)}: {kind} {h}" for h in found if h != digests[kind]]
        if args.check:
            continue
        new = repin(text, digests)
        if args.in_place:
            if new != text:
                path.write_text(new)
        else:
            dest = args.out / path.relative_to(args.root)
            dest.parent.mkdir(parents=True, exist_ok=True)
            dest.write_text(new)
    if total[IMAGE] == 0:
        print("pin: no `sha256:` image pin found under " + str(args.root), file=sys.stderr)
        return 1
    if stale:
        print(f"pin: manifests pin another build than image sha256:{image}"
              + (f", module sha256:{module}" if module else ""), file=sys.stderr)
        print("\n".join("  " + s for s in stale), file=sys.stderr)
        print("run `make oci-pin` and commit deploy/", file=sys.stderr)
        return 1
    where = "deploy/" if args.in_place or args.check else str(args.out)
    print(f"pin: {total[IMAGE]} image pins -> sha256:{image}, {total[MODULE]} module pins"
          + (f" -> sha256:{module}" if module else "") + f" in {where}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
