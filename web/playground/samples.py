"""Prints the playground's samples as JSON: the SP-API Orders payloads of
tests/support/sp_api.py (the ones the end-to-end tests send through Envoy),
with the PII values each carries, so the page and its tests use exactly the
project's samples. Standard library only.

Output: {"getOrder": {"path", "body", "pii": [...]}, ...}
"""
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tests"))

from support.sp_api import OPERATIONS, pii_values  # noqa: E402

samples = {
    name: {"path": path, "body": json.dumps(doc, indent=2), "pii": sorted(pii_values(doc))}
    for name, (path, doc) in OPERATIONS.items()
}
json.dump(samples, sys.stdout, indent=1)
print()
