"""The registry: log the winner as an MLflow pyfunc model, register a version, gate and move the alias."""

from __future__ import annotations

import contextlib
import io
import json
import math
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from pipelines import tracking
from pipelines.config import KilnConfig

TEST_METRIC = "test_accuracy"


@dataclass(frozen=True)
class Registered:
    name: str
    version: int
    promoted: bool
    reason: str


class ModelNotFound(LookupError):
    pass


def _requirements() -> list[str]:
    # Explicit, so MLflow does not spend a subprocess inferring them.
    from importlib.metadata import version

    return [f"{pkg}=={version(pkg)}" for pkg in ("mlflow", "torch", "pandas", "numpy", "pydantic", "pyyaml")]


def signature(example: pd.DataFrame):
    """Feature names are required; their type is left open because MLflow refuses int64 columns for
    a double schema ("cannot safely convert"), and integer-valued CSVs are common. The model itself
    converts to float and rejects non-numeric values."""
    from mlflow.models import ModelSignature
    from mlflow.types.schema import AnyType, ColSpec, Schema

    inputs = Schema([ColSpec(AnyType(), str(name)) for name in example.columns])
    return ModelSignature(inputs=inputs, outputs=Schema([ColSpec(AnyType(), "prediction")]))


def git_commit() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5,
                             cwd=Path(__file__).parent)
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def register(cfg: KilnConfig, *, checkpoint_dir: str, example: pd.DataFrame, parent_run_id: str,
             test_accuracy: float, data_fingerprint: str) -> Registered:
    """Log and register a new version; move the alias only if it loads and passes the promotion gate."""
    import mlflow

    from pipelines.inference import KilnPyfunc

    mlflow_client = tracking.client(cfg)
    name = cfg.registry.model_name
    with mlflow.start_run(run_id=parent_run_id), contextlib.redirect_stdout(io.StringIO()):
        info = mlflow.pyfunc.log_model(
            name="model", python_model=KilnPyfunc(), artifacts={"checkpoint": checkpoint_dir},
            signature=signature(example), input_example=example, pip_requirements=_requirements(),
            registered_model_name=name)
    version = int(info.registered_model_version)
    tags = {"run_id": parent_run_id, TEST_METRIC: f"{test_accuracy:.6f}", "data_fingerprint": data_fingerprint,
            "git_commit": git_commit(), "config": json.dumps(cfg.model_dump())[:5000]}
    for key, value in tags.items():
        mlflow_client.set_model_version_tag(name, str(version), key, value)

    # Never point the alias at something that does not load: load it the way serving will.
    loaded = mlflow.pyfunc.load_model(f"models:/{name}/{version}")
    loaded.predict(example)

    promote, reason = should_promote(cfg, mlflow_client, test_accuracy)
    if promote:
        mlflow_client.set_registered_model_alias(name, cfg.registry.alias, str(version))
    return Registered(name, version, promote, reason)


def should_promote(cfg: KilnConfig, mlflow_client, test_accuracy: float) -> tuple[bool, str]:
    policy = cfg.registry.promote
    if policy != "if_better":
        return policy == "always", f"registry.promote is {policy}"
    try:
        current = mlflow_client.get_model_version_by_alias(cfg.registry.model_name, cfg.registry.alias)
    except Exception:  # no such alias yet
        return True, f"no {cfg.registry.alias} yet"
    previous = float(current.tags.get(TEST_METRIC, "nan"))
    decision = math.isnan(previous) or test_accuracy >= previous  # unknown score: promote
    verdict = "at least as good as" if decision else "worse than"
    return decision, (f"{TEST_METRIC} {test_accuracy:.4f} is {verdict} "
                      f"{cfg.registry.alias} v{current.version} ({previous:.4f})")


def resolve(cfg: KilnConfig, ref: str) -> tuple[str, int]:
    """`NAME`, `NAME@ALIAS` or `NAME/VERSION` to (name, version), from this store's registry only."""
    mlflow_client = tracking.client(cfg)
    if "@" in ref:
        name, alias = ref.split("@", 1)
    elif "/" in ref:
        name, version = ref.rsplit("/", 1)
        try:
            return name, int(mlflow_client.get_model_version(name, version).version)
        except Exception:
            raise ModelNotFound(f"model {name!r} has no version {version} in {cfg.tracking_uri}") from None
    else:
        name, alias = ref, cfg.registry.alias
    try:
        return name, int(mlflow_client.get_model_version_by_alias(name, alias).version)
    except Exception:
        raise ModelNotFound(f"registry.alias {alias!r} not found for model {name!r} in {cfg.tracking_uri}; "
                            "run 'kiln run CONFIG' first") from None
