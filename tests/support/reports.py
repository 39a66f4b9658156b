"""Where a test keeps the Envoys whose logs belong in its failure report.

Lives here, not in conftest.py, because tests/deploy has its own conftest and
`from conftest import ...` would pick whichever was imported first.
"""
from __future__ import annotations

import pytest

ENVOYS_KEY = pytest.StashKey[list]()
