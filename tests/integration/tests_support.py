"""Paths shared by the integration tests and their fixtures."""

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
KILN = str(Path(sys.executable).parent / "kiln")
