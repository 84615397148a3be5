"""Private Ray APIs live in pipelines/cluster/ray_private.py alone, read against one Ray version: an upgrade fails here,
not deep inside a trial."""

from __future__ import annotations

import ast
from pathlib import Path

import ray

from pipelines.cluster import ray_private

ROOT = Path(__file__).resolve().parents[2]
ROOM = ROOT / "pipelines" / "cluster" / "ray_private.py"


def test_ray_is_the_version_the_private_uses_were_read_against():
    assert ray.__version__ == ray_private.RAY_VERSION, (
        f"Ray {ray.__version__}: re-read every use in pipelines/cluster/ray_private.py against its source, "
        "then set RAY_VERSION"
    )


def test_each_private_api_is_still_there():
    assert ray_private.torch_framework().name == "TORCH"
    from ray._private.internal_api import memory_summary  # noqa: F401  (what ray_private.memory_summary calls)
    from ray._private.worker import global_worker  # noqa: F401  (ray_private.dashboard_address)


def private_uses(path: Path) -> list[str]:
    """`ray.<...>._private`, `._internal` and the like, imported or reached as an attribute."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        names = []
        if isinstance(node, ast.ImportFrom) and node.module:
            names = [node.module]
        elif isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.Attribute):
            names = [ast.unparse(node)]
        for name in names:
            parts = name.split(".")
            if parts[0] == "ray" and any(p.startswith("_") for p in parts[1:]):
                found.append(f"{path.relative_to(ROOT)}:{node.lineno}: {name}")
    return found


def test_no_private_ray_api_outside_its_room():
    files = [p for folder in ("pipelines", "serving", "benchmarks") for p in (ROOT / folder).rglob("*.py")]
    outside = [use for p in files if p != ROOM for use in private_uses(p)]
    assert not outside, outside
    assert private_uses(ROOM), "the room's own uses are found, so the scan sees them"
