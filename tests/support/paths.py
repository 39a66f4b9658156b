"""Where things are in the repository."""
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
WASM = ROOT / "target" / "wasm32-wasip1" / "release" / "dpp_guard.wasm"
ENVOY_DIR = ROOT / "envoy"
VENV_BIN = ROOT / ".venv" / "bin"
ENVOY_BIN = VENV_BIN / "envoy"
