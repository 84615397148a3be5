"""The import rules of docs/architecture.md, read from the source: every arrow points down, no loops.

Layers of `pipelines`, lowest first; a module imports from its own layer or a lower one:
  core          the config and its errors, the data's preprocessing, the model, the checkpoint format,
                inference from a checkpoint, storage paths, the MLflow client factory, console output
  stages        ingest, training/, search/, evaluate, tracking, registry, plan/, report/, runtime
  orchestrator  run (the stage order), record (the run's MLflow parent and ledger entry), deploy
  cli           the `kiln` commands
`serving` imports core modules and `pipelines.registry` only; inside `pipelines`, only the CLI and the deploy
step import `serving`. Imports inside functions count: a loop through a lazy import is still a loop.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("pipelines", "serving")

CORE = {
    "pipelines.errors",
    "pipelines.config",
    "pipelines.search.space",
    "pipelines.search.auto",
    "pipelines.ports",
    "pipelines.console",
    "pipelines.store",
    "pipelines.models",
    "pipelines.data",
    "pipelines.checkpoint",
    "pipelines.inference",
    "pipelines.pyfunc_model",
    "pipelines.storage",
    "pipelines.schema",
    "pipelines.encoding",
    "pipelines.metrics",
    "pipelines.task",
    "pipelines.integrity",
    "pipelines.pyfunc_code",
    "pipelines.auth",
    "pipelines.text",
    "pipelines.reviews",
    "pipelines.images",
}
ORCHESTRATOR = {"pipelines.run", "pipelines.record", "pipelines.deploy"}
CLI = {"pipelines.cli"}
SERVING_MAY_IMPORT = CORE | {"pipelines.registry"}
MAY_IMPORT_SERVING = {"pipelines.cli", "pipelines.deploy"}


def layer(module: str) -> int:
    if module in CORE:
        return 0
    if module in ORCHESTRATOR:
        return 2
    if module in CLI:
        return 3
    return 1


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def all_modules() -> dict[str, Path]:
    return {module_name(p): p for package in PACKAGES for p in (ROOT / package).rglob("*.py")}


def imports_of(path: Path, modules: set[str]) -> set[str]:
    """The project modules `path` imports, anywhere in the file (`from a import b` counts a.b if it is one)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [f"{node.module}.{alias.name}" for alias in node.names] + [node.module]
        else:
            continue
        for name in names:
            while name and name not in modules:
                name = name.rpartition(".")[0]
            if name and name not in PACKAGES:
                found.add(name)
    return found


def graph() -> dict[str, set[str]]:
    modules = all_modules()
    return {name: imports_of(path, set(modules)) - {name} for name, path in modules.items()}


def find_cycle(edges: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for target in sorted(edges.get(node, ())):
            if state.get(target) == 1:
                return path[path.index(target) :] + [target]
            if target not in state and (cycle := visit(target)):
                return cycle
        path.pop()
        state[node] = 2
        return None

    for node in sorted(edges):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def unit(module: str) -> str:
    """A stage folder counts as one unit (pipelines.search.tuner -> pipelines.search)."""
    parts = module.split(".")
    return ".".join(parts[:2])


def test_the_layer_lists_name_real_modules():
    modules = set(all_modules())
    assert CORE | ORCHESTRATOR | CLI | SERVING_MAY_IMPORT <= modules


def test_no_module_imports_itself_back():
    assert find_cycle(graph()) is None, " -> ".join(find_cycle(graph()))


def test_no_stage_folder_imports_itself_back():
    folders: dict[str, set[str]] = {}
    for source, targets in graph().items():
        if source.startswith("pipelines.") and source not in CORE:
            folders.setdefault(unit(source), set()).update(
                unit(t) for t in targets if t.startswith("pipelines.") and t not in CORE and unit(t) != unit(source)
            )
    cycle = find_cycle(folders)
    assert cycle is None, " -> ".join(cycle)


def test_every_arrow_in_pipelines_points_down():
    upward = [
        f"{source} ({layer(source)}) -> {target} ({layer(target)})"
        for source, targets in graph().items()
        if source.startswith("pipelines")
        for target in targets
        if target.startswith("pipelines") and layer(target) > layer(source)
    ]
    assert not upward, "\n".join(upward)


def test_serving_depends_on_core_and_the_registry_only():
    outside = [
        f"{source} -> {target}"
        for source, targets in graph().items()
        if source.startswith("serving")
        for target in targets
        if target.startswith("pipelines") and target not in SERVING_MAY_IMPORT
    ]
    assert not outside, "\n".join(outside)


def test_only_the_cli_and_the_deploy_step_import_serving():
    reaching = [
        f"{source} -> {target}"
        for source, targets in graph().items()
        if source.startswith("pipelines") and source not in MAY_IMPORT_SERVING
        for target in targets
        if target.startswith("serving")
    ]
    assert not reaching, "\n".join(reaching)


def test_the_cycle_finder_finds_a_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None
