"""The import rules of docs/architecture.md, read from the source: every arrow points down, no loops.

`pipelines` is layered by folder, lowest first; a module imports from its own layer or a lower one:
  base          errors, console, signals, task_metrics, config, and the search space's domains beside the
                config (search/space.py, search/auto.py): plain Python every layer may use
  cluster/      the machines: Ray's runtime, the storage every node reaches, locks, ports, Ray's private APIs
  data/         sources and the split, column types, the task, preprocessing, text, images, built-in data, ingest
  model/        networks, the checkpoint format, inference, evaluation, the baseline
  training/ tracking/   the loop on the workers; MLflow (the one client, runs, registry, integrity, the pyfunc)
  search/ scoring/   Ray Tune: trials, schedulers, the sampler, the ledger; `kiln score` on Ray Data
  plan/ report/ what a run will cost; what it did
  run, record, deploy   the orchestrator
  cli           the `kiln` commands
`serving` imports layers up to tracking/ (never training/ or above); inside `pipelines`, only the CLI and the
deploy step import `serving`. Imports inside functions count: a loop through a lazy import is still a loop.
A module the rules do not place fails the test, so a new folder takes its layer on purpose.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("pipelines", "serving")

LAYERS = {  # the longest matching prefix decides a module's layer
    "pipelines": 0,  # the package itself
    "pipelines.errors": 0,
    "pipelines.console": 0,
    "pipelines.signals": 0,
    "pipelines.task_metrics": 0,
    "pipelines.config": 0,
    "pipelines.search.space": 0,
    "pipelines.search.auto": 0,
    "pipelines.cluster": 1,
    "pipelines.data": 2,
    "pipelines.model": 3,
    "pipelines.training": 4,
    "pipelines.tracking": 4,
    "pipelines.pyfunc_model": 4,  # the path versions registered before tracking/ import their model from
    "pipelines.search": 5,
    "pipelines.scoring": 5,
    "pipelines.plan": 6,
    "pipelines.report": 6,
    "pipelines.run": 7,
    "pipelines.record": 7,
    "pipelines.deploy": 7,
    "pipelines.cli": 8,
}
SERVING_LAYER = LAYERS["pipelines.tracking"]
MAY_IMPORT_SERVING = {"pipelines.cli", "pipelines.deploy"}


def rule_of(module: str) -> str | None:
    name = module
    while name and name not in LAYERS:
        name = name.rpartition(".")[0]
    return name if name and (name != "pipelines" or module == "pipelines") else None


def layer(module: str) -> int:
    return LAYERS[rule_of(module)]


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
    """A folder counts as one unit (pipelines.search.tuner -> pipelines.search); a base module is its own."""
    return module if layer(module) == 0 else ".".join(module.split(".")[:2])


def test_every_module_has_a_layer_and_every_rule_a_module():
    modules = [m for m in all_modules() if m.startswith("pipelines")]
    assert [m for m in modules if rule_of(m) is None] == []
    assert [rule for rule in LAYERS if not any(m == rule or m.startswith(rule + ".") for m in modules)] == []


def test_the_root_of_pipelines_stays_small():
    assert len([p for p in (ROOT / "pipelines").glob("*.py") if p.name != "__init__.py"]) <= 12


def test_no_module_imports_itself_back():
    assert find_cycle(graph()) is None, " -> ".join(find_cycle(graph()))


def test_no_stage_folder_imports_itself_back():
    folders: dict[str, set[str]] = {}
    for source, targets in graph().items():
        if source.startswith("pipelines."):
            folders.setdefault(unit(source), set()).update(
                unit(t) for t in targets if t.startswith("pipelines.") and unit(t) != unit(source)
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


def test_serving_depends_on_layers_up_to_tracking_and_never_on_training():
    outside = [
        f"{source} -> {target}"
        for source, targets in graph().items()
        if source.startswith("serving")
        for target in targets
        if target.startswith("pipelines") and layer(target) > SERVING_LAYER or target.startswith("pipelines.training")
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
