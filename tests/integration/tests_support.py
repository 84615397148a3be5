"""Paths shared by the integration tests and their fixtures."""

import socket
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
KILN = str(Path(sys.executable).parent / "kiln")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
