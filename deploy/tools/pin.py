#!/usr/bin/env python3
"""Point the manifests under deploy/ at one OCI image manifest digest.

Every pin in deploy/ is a YAML line `sha256: <64 hex>` (WasmPlugin
spec.sha256, EnvoyExtensionPolicy wasm[].code.image.sha256, the upstream
guard's EnvoyFilter remote.sha256); nothing else in deploy/ has that shape.
Rewriting those lines only keeps comments and layout intact (a YAML round
trip would drop them) and needs no third-party module.

Usage:
  pin.py --digest sha256:HEX --out DIR    write pinned copies of deploy/*/*.yaml under DIR
  pin.py --digest sha256:HEX --in-place   rewrite deploy/ itself (a release step: commit it)
  pin.py --digest sha256:HEX --check      exit 1 unless deploy/ already pins HEX everywhere
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

DEPLOY = Path(__file__).resolve().parent.parent
PIN_LINE = re.compile(r"^(?P<lead>\s*sha256:\s*)(?P<q>[\"']?)(?P<hex>[0-9a-f]{64})(?P=q)(?P<tail>\s*(#.*)?)$")
DIGEST = re.compile(r"^sha256:(?P<hex>[0-9a-f]{64})$")


def manifests(root: Path = DEPLOY) -> list[Path]:
    """The Kubernetes manifests (tools/ holds none)."""
    return sorted(p for p in root.rglob("*.yaml") if "tools" not in p.relative_to(root).parts)


def pins(text: str) -> list[str]:
    return [m.group("hex") for line in text.splitlines() if (m := PIN_LINE.match(line))]


def repin(text: str, hex_digest: str) -> str:
    out = []
    for line in text.splitlines(keepends=True):
        body = line.rstrip("\n")
        m = PIN_LINE.match(body)
        if m:
            body = f"{m.group('lead')}{m.group('q')}{hex_digest}{m.group('q')}{m.group('tail')}"
            line = body + ("\n" if line.endswith("\n") else "")
        out.append(line)
    return "".join(out)


def parse_digest(s: str) -> str:
    m = DIGEST.match(s.strip())
    if not m:
        raise SystemExit(f"pin: not a sha256 manifest digest: {s!r}")
    return m.group("hex")


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--digest", help="sha256:HEX")
    p.add_argument("--digest-file", type=Path, help="file holding sha256:HEX (written by oci_image.py build)")
    p.add_argument("--root", type=Path, default=DEPLOY, help="the manifests' directory (default: deploy/)")
    mode = p.add_mutually_exclusive_group(required=True)
    mode.add_argument("--out", type=Path)
    mode.add_argument("--in-place", action="store_true")
    mode.add_argument("--check", action="store_true")
    args = p.parse_args(argv)
    if bool(args.digest) == bool(args.digest_file):
        p.error("give exactly one of --digest, --digest-file")
    hex_digest = parse_digest(args.digest or args.digest_file.read_text())
    stale = []
    total = 0
    for path in manifests(args.root):
        text = path.read_text()
        found = pins(text)
        total += len(found)
        if args.check:
            stale += [f"{path.relative_to(args.root)}: {h}" for h in found if h != hex_digest]
            continue
        new = repin(text, hex_digest)
        if args.in_place:
            if new != text:
                path.write_text(new)
        else:
            dest = args.out / path.relative_to(args.root)
            dest.parent.mkdir(parents=True, exist_ok=True)
            dest.write_text(new)
    if total == 0:
        print("pin: no `sha256:` pin found under " + str(args.root), file=sys.stderr)
        return 1
    if stale:
        print("pin: manifests pin another image than sha256:" + hex_digest, file=sys.stderr)
        print("\n".join("  " + s for s in stale), file=sys.stderr)
        print("run `make oci-pin` and commit deploy/", file=sys.stderr)
        return 1
    where = "deploy/" if args.in_place or args.check else str(args.out)
    print(f"pin: {total} pins in {where} -> sha256:{hex_digest}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
