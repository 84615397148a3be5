"""A throwaway MLflow store holding real versions of the tiny string-label model, without Ray.
Shared by tests/integration/test_serving.py and benchmarks/serve.py."""

from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd

from pipelines.config import KilnConfig, load_config
from pipelines.tracking import mlflow_runs, registry

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests"))  # shared helpers such as tiny_model

from tiny_model import train_tiny  # noqa: E402

FEATURES = ["a", "b", "c", "d"]


def tiny_store(
    root: Path, name: str, overrides: list[str] = (), *, versions: int = 2, blend_weight: float | None = None
) -> tuple[KilnConfig, pd.DataFrame]:
    """Register `versions` trained versions of `name` in a store under root; the alias points at v1.
    `blend_weight`: each version is registry.candidates' blend (that weight on the network) with trees fitted
    on the same rows, as a run registers it when the blend wins."""
    cfg = load_config(
        None, [f"storage.root={root / 'runs'}", f"registry.model_name={name}", "name=serving", *overrides]
    ).for_task("classification")
    frame = None
    for number in range(1, versions + 1):
        folder = root / f"v{number}"
        frame = train_tiny(folder, steps=100 if number == 1 else 20, seed=number)
        promote = "always" if number == 1 else "never"
        versioned = cfg.model_copy(update={"registry": cfg.registry.model_copy(update={"promote": promote})})
        parent = mlflow_runs.start_parent(versioned, run_name=f"v{number}", tags={})
        test = frame.sample(40, random_state=number)
        registered = registry.register(
            versioned,
            checkpoint_dir=str(folder),
            test_frame=test[FEATURES],
            test_labels=test["label"].tolist(),
            parent_run_id=parent,
            test_value=0.9,
            data_fingerprint="f" * 16,
            **(blended(folder, frame, blend_weight) if blend_weight is not None else {}),
        )
        assert registered.version == number
        mlflow_runs.end_run(versioned, parent, "FINISHED")
    return cfg, frame


def blended(folder: Path, frame: pd.DataFrame, weight: float) -> dict:
    """registry.register's arguments for a blend of the checkpoint in `folder` and trees fitted on `frame`."""
    from pipelines.model import baseline
    from pipelines.model.inference import InferenceModel

    labels = InferenceModel(folder).preprocessing.labels
    trees = baseline.fit(frame[FEATURES], frame["label"].to_numpy(), dict.fromkeys(FEATURES, "number"), labels=labels)
    return {"candidate": {"name": "blend", "weight": weight}, "baseline": trees}


def fuzz(url: str, *, api: str, examples: int, workdir: Path, seed: int = 0) -> dict:
    """Schemathesis over the endpoint's own OpenAPI document (/openapi.json), one API at a time: `v2` (the Open
    Inference Protocol's routes) or `kiln` (/predict, /model, the health checks). Returns the requests sent and
    how many got a status of 500 or more, read from its HAR report; `failures`: what it printed otherwise."""
    import json
    import subprocess

    har = workdir / f"fuzz-{api}.har"
    command = [
        str(Path(sys.executable).parent / "schemathesis"),
        "run",
        f"{url}/openapi.json",
        "--checks",
        "not_a_server_error",
        "--max-examples",
        str(examples),
        "--seed",
        str(seed),
        "--report",
        "har",
        "--report-har-path",
        str(har),
        *(["--include-path-regex", "^/v2"] if api == "v2" else ["--exclude-path-regex", "^/v2"]),
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=1800, cwd=workdir)
    from collections import Counter
    from urllib.parse import urlsplit

    entries = json.loads(har.read_text())["log"]["entries"]
    statuses = [entry["response"]["status"] for entry in entries]
    routes = Counter(f"{e['request']['method']} {urlsplit(e['request']['url']).path}" for e in entries)
    return {
        "requests": len(statuses),
        "routes": dict(routes.most_common(12)),
        "five_xx": sum(status >= 500 for status in statuses),
        "exit_status": done.returncode,
        "failures": "" if done.returncode == 0 else (done.stdout + done.stderr)[-3000:],
    }
