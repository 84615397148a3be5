"""The registry: log the winner as an MLflow pyfunc model, register a version, gate and move the alias."""

from __future__ import annotations

import contextlib
import io
import json
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import safetensors.torch
import torch

from pipelines import task_metrics
from pipelines.cluster import locks, storage
from pipelines.config import KilnConfig
from pipelines.data import pretrained
from pipelines.data.preprocessing import Preprocessing
from pipelines.errors import ModelNotFound
from pipelines.model import checkpoint
from pipelines.model.evaluate import primary_metric, score
from pipelines.model.inference import BASELINE_FOLDER
from pipelines.model.networks import BUILDERS
from pipelines.tracking import integrity, mlflow_runs, mlflow_store


@dataclass(frozen=True)
class Registered:
    name: str
    version: int
    promoted: bool
    reason: str

    def describe(self, alias: str) -> str:
        moved = f"alias '{alias}' -> v{self.version}" if self.promoted else f"alias '{alias}' unchanged"
        return f"  {self.name} v{self.version} registered; {moved} ({self.reason})"


def _requirements(cfg: KilnConfig) -> list[str]:
    # Explicit, so MLflow does not spend a subprocess inferring them.
    from importlib.metadata import version

    packages = ["mlflow", "torch", "pandas", "numpy", "pydantic", "pyyaml"]
    if cfg.data.tokenizer == "bpe":
        packages.append("tokenizers")
    return [f"{pkg}=={version(pkg)}" for pkg in packages]


def signature(example: pd.DataFrame):
    """Feature names are required; their type is left open because MLflow refuses int64 columns for
    a double schema ("cannot safely convert"), and integer-valued CSVs are common. The model itself
    converts to float and rejects non-numeric values."""
    from mlflow.models import ModelSignature
    from mlflow.types.schema import AnyType, ColSpec, ParamSchema, ParamSpec, Schema

    inputs = Schema([ColSpec(AnyType(), str(name)) for name in example.columns])
    params = ParamSchema([ParamSpec("probabilities", "boolean", False)])  # predict(frame, params={...: True})
    return ModelSignature(inputs=inputs, outputs=Schema([ColSpec(AnyType(), "prediction")]), params=params)


def git_commit() -> str:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5, cwd=Path(__file__).parent
        )
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def register(
    cfg: KilnConfig,
    *,
    checkpoint_dir: str,
    test_frame: pd.DataFrame,
    test_labels: list,
    parent_run_id: str,
    test_value: float,
    data_fingerprint: str,
    lineage: dict[str, str] | None = None,
    candidate: dict | None = None,
    baseline=None,
) -> Registered:
    """Log and register a new version; move the alias only if it loads and passes the promotion gate, which
    compares the task's primary test metric (`test_value`: test_accuracy or test_rmse).

    The model is logged as MLflow models-from-code (pipelines/tracking/pyfunc_code.py, no pickle) with the checkpoint's
    JSON and weights; the version's files are signed (integrity.TAG, keyed) for every later load. `candidate`
    ({"name": "baseline" | "blend", "weight": ...}, registry.candidates' winner) and `baseline` (the fitted
    baseline.Fitted) put the baseline in the version beside the network, kept without a pickle."""
    import mlflow

    mlflow_client = mlflow_runs.client(cfg)
    name = cfg.registry.model_name
    key = integrity.signing_key()
    example = test_frame.head(4)
    try:  # logging validates the input example, so a model that cannot predict stops here
        with (
            tempfile.TemporaryDirectory() as staging,
            mlflow_store.scoped(cfg.tracking_uri),
            mlflow.start_run(run_id=parent_run_id),
            contextlib.redirect_stdout(io.StringIO()),
            contextlib.redirect_stderr(io.StringIO()),
        ):
            info = mlflow.pyfunc.log_model(
                name="model",
                python_model=str(CODE),
                artifacts={"checkpoint": servable(checkpoint_dir, staging, candidate=candidate, baseline=baseline)},
                signature=signature(example),
                input_example=example,
                pip_requirements=_requirements(cfg),
                registered_model_name=name,
            )
    except Exception as err:
        raise RuntimeError(
            f"{name}: the new model failed its load check, alias not moved: {type(err).__name__}: {str(err)[:200]}"
        ) from None
    version = int(info.registered_model_version)
    metric = primary_metric(cfg.task)
    tags = {
        integrity.TAG: integrity.digest(mlflow_store.version_folder(cfg.tracking_uri, name, version), key),
        "candidate": (candidate or {}).get("name", "network"),
        **({"blend_weight": f"{candidate['weight']:.4f}"} if candidate and candidate.get("weight") is not None else {}),
        "run_id": parent_run_id,
        "task": cfg.task,
        "test_metric": metric,
        metric: f"{test_value:.6f}",
        "data_fingerprint": data_fingerprint,
        "git_commit": git_commit(),
        "config": json.dumps(storage.masked(cfg.model_dump()))[:5000],
        **(lineage or {}),
    }
    for key, value in tags.items():
        mlflow_client.set_model_version_tag(name, str(version), key, value)

    load_check(cfg, name, version, example, fresh=True)
    promote, reason = gate_and_move(cfg, mlflow_client, version, test_value, test_frame, test_labels)
    mlflow_runs.set_tags(
        cfg,
        parent_run_id,
        {"kiln.promotion": reason, "kiln.promoted": str(promote).lower(), "kiln.model_version": str(version)},
    )
    return Registered(name, version, promote, reason)


def gate_and_move(
    cfg: KilnConfig,
    mlflow_client,
    version: int,
    test_value: float,
    test_frame: pd.DataFrame,
    test_labels: list,
    *,
    attempts: int = 3,
) -> tuple[bool, str]:
    """The promotion gate, then the alias move, only if the alias still points where the gate looked: a run that
    moved it meanwhile (two runs of one model finishing together) is compared against again."""
    name, alias = cfg.registry.model_name, cfg.registry.alias
    for _ in range(attempts):
        seen = _alias_version(mlflow_client, name, alias)
        promote, reason = should_promote(cfg, mlflow_client, test_value, test_frame, test_labels)
        if not promote:
            return False, reason
        try:
            with alias_lock(cfg, name, alias):  # the recheck and the move, with no other Kiln move between them
                if _alias_version(mlflow_client, name, alias) == seen:
                    move_alias(cfg, name, version)
                    return True, reason
        except AliasBusy as err:
            return False, f"{err} (kiln promote {name} {version} moves it by hand)"
    return False, (
        f"{alias} moved {attempts} times while this run compared against it: not moved "
        f"(kiln promote {name} {version} moves it by hand)"
    )


ALIAS_WAIT_S = 60.0


class AliasBusy(RuntimeError):
    """Another Kiln process kept the alias's lock past ALIAS_WAIT_S."""


def alias_lock(cfg: KilnConfig, name: str, alias: str):
    """Held while Kiln reads and moves an alias (a run's gate, promote, rollback), so two moves never interleave;
    on a local storage.root only (locks.py): with an object store the recheck in gate_and_move is the guard."""
    safe = re.sub(r"[^A-Za-z0-9._-]", "_", f"{name}.{alias}")
    return locks.held(
        cfg,
        f"registry/{safe}.lock",
        wait_s=ALIAS_WAIT_S,
        error=AliasBusy,
        busy=f"the {alias} alias of {name} stayed locked by another kiln process for {ALIAS_WAIT_S:g} s: not moved",
    )


def _alias_version(mlflow_client, name: str, alias: str) -> str | None:
    try:
        return str(mlflow_client.get_model_version_by_alias(name, alias).version)
    except Exception:  # no such alias yet
        return None


CODE = Path(__file__).with_name("pyfunc_code.py")  # the registered model's code (models-from-code)
SERVED_FILES = ("kiln.json", "model.pt")  # what a version needs of a checkpoint (not the optimizer's state)


def servable(checkpoint_dir: str, staging: str, *, candidate: dict | None = None, baseline=None) -> str:
    """The checkpoint's files a version keeps, in a folder named `checkpoint` under `staging`; with a user
    factory, its module's source too (checkpoint.FACTORY_FILE), so the version runs the code it was signed with;
    when the baseline or a blend won, the kept baseline (`baseline/`) and the candidate in kiln.json."""
    folder = Path(staging) / "checkpoint"
    folder.mkdir()
    for file in SERVED_FILES:
        shutil.copy2(Path(checkpoint_dir) / file, folder / file)
    name = checkpoint.read_meta(folder)["model"]["name"]
    if name not in BUILDERS:
        shutil.copyfile(checkpoint.factory_source(name), folder / checkpoint.FACTORY_FILE)
    carry_backbones(folder)
    if candidate and candidate["name"] != "network":
        baseline.save(folder / BASELINE_FOLDER)
        meta = checkpoint.read_meta(folder)
        (folder / checkpoint.META_FILE).write_text(json.dumps({**meta, "candidate": candidate}))
    return str(folder)


def carry_backbones(folder: Path) -> None:
    """Each pretrained text encoder's model folder copied into the version (`pretrained/<i>`, signed with the
    rest), and kiln.json pointed at the copy: the endpoint, the pyfunc and promote need nothing but the version.
    A fine-tuned encoder's trained weights replace the copy's model.safetensors and leave the checkpoint's
    weights file, so the copy is that fine-tuned model, which transformers loads as it is."""
    meta = checkpoint.read_meta(folder)
    tuned = checkpoint.backbone_prefixes(Preprocessing.from_dict(meta["preprocessing"]))
    state = None
    for i, encoder in enumerate(meta["preprocessing"]["encoders"]):
        if encoder.get("pretrained"):
            relative = f"pretrained/{i}"
            pretrained.copy_folder(encoder["pretrained"], folder / relative)
            if encoder["name"] in tuned:
                if state is None:
                    state = torch.load(folder / checkpoint.WEIGHTS_FILE, map_location="cpu", weights_only=True)
                prefix = tuned[encoder["name"]]
                weights = {
                    k.removeprefix(prefix): state.pop(k).contiguous() for k in list(state) if k.startswith(prefix)
                }
                safetensors.torch.save_file(weights, folder / relative / pretrained.WEIGHTS, metadata={"format": "pt"})
            encoder["pretrained"] = relative
    if state is not None:
        torch.save(state, folder / checkpoint.WEIGHTS_FILE)
    (folder / checkpoint.META_FILE).write_text(json.dumps(meta))


def load_check(cfg: KilnConfig, name: str, version: int, example: pd.DataFrame, *, fresh: bool = False) -> None:
    """Never point an alias at something that does not load: load and predict the way serving will (its
    signature checked, the checkpoint loaded without running stored code but a trusted factory's) and, for a
    version just logged (`fresh`), the way a user's mlflow.pyfunc.load_model will."""
    try:
        mlflow_store.load_verified(
            cfg.tracking_uri, name, version, factory=checkpoint.trusted_factory(cfg.model)
        ).predict(example)
        if fresh:
            mlflow_store.load_pyfunc(cfg.tracking_uri, name, version).predict(example)
    except Exception as err:
        raise RuntimeError(
            f"{name} v{version} failed its load check, alias not moved: {type(err).__name__}: {err}"
        ) from None


def should_promote(
    cfg: KilnConfig, mlflow_client, test_value: float, test_frame: pd.DataFrame, test_labels: list
) -> tuple[bool, str]:
    """if_better: the current champion is scored again on this run's test split with the task's primary metric
    (higher accuracy, lower rmse), so both numbers compare."""
    policy, alias = cfg.registry.promote, cfg.registry.alias
    if policy != "if_better":
        return policy == "always", f"registry.promote is {policy}"
    current = _alias_version(mlflow_client, cfg.registry.model_name, alias)
    if current is None:
        return True, f"no {alias} yet"
    try:
        champion = mlflow_store.load_verified(
            cfg.tracking_uri, cfg.registry.model_name, current, factory=checkpoint.trusted_factory(cfg.model)
        )
        previous = score(cfg.task, list(champion.predict(champion.feature_frame(test_frame))), test_labels)
    except Exception as err:  # e.g. trained on other features, for the other task, or its files changed
        return True, f"{alias} v{current} cannot score this test split ({type(err).__name__})"
    metric = primary_metric(cfg.task)
    decision = test_value >= previous if task_metrics.mode_of(metric) == "max" else test_value <= previous
    verdict = "at least as good as" if decision else "worse than"
    return decision, (
        f"{metric} {test_value:.4f} is {verdict} {alias} v{current} ({previous:.4f} on the same test split)"
    )


def _history_key(alias: str) -> str:
    return f"kiln.alias_history.{alias}"


def move_alias(cfg: KilnConfig, name: str, version: int) -> None:
    """Point the alias at `version`, remembering where it pointed before (for rollback)."""
    mlflow_client = mlflow_runs.client(cfg)
    alias = cfg.registry.alias
    model = mlflow_client.get_registered_model(name)
    history = json.loads(model.tags.get(_history_key(alias), "[]"))
    if not history or history[-1] != version:
        history.append(version)
    mlflow_client.set_registered_model_tag(name, _history_key(alias), json.dumps(history[-50:]))
    mlflow_client.set_registered_model_alias(name, alias, str(version))


def promote(cfg: KilnConfig, name: str, version: int) -> None:
    """`kiln promote NAME VERSION`: load-check, then move the alias to that version."""
    mlflow_client = mlflow_runs.client(cfg)
    try:
        mlflow_client.get_model_version(name, str(version))
    except Exception:
        raise ModelNotFound(f"model {name!r} has no version {version} in {cfg.tracking_uri}") from None
    load_check(cfg, name, version, _example_of(cfg, name, version))
    with alias_lock(cfg, name, cfg.registry.alias):
        move_alias(cfg, name, version)


def rollback(cfg: KilnConfig, name: str) -> tuple[int, int]:
    """`kiln rollback NAME`: the alias goes back to the champion before the current one."""
    mlflow_client = mlflow_runs.client(cfg)
    alias = cfg.registry.alias
    with alias_lock(cfg, name, alias):  # read and moved with no other Kiln move between
        try:
            model = mlflow_client.get_registered_model(name)
        except Exception:
            raise ModelNotFound(f"no registered model {name!r} in {cfg.tracking_uri}") from None
        return _roll_back(cfg, mlflow_client, model, alias)


def _roll_back(cfg: KilnConfig, mlflow_client, model, alias: str) -> tuple[int, int]:
    name = model.name
    history = json.loads(model.tags.get(_history_key(alias), "[]"))
    live = model.aliases.get(alias)
    if live is None:
        raise ModelNotFound(f"model {name!r} has no {alias} alias to roll back")
    current = int(live)
    # The live alias decides, not the history tag: an alias moved outside Kiln (the MLflow UI, another client)
    # means the history's last entry is the champion before the current one.
    if history and history[-1] == current:
        history = history[:-1]
    if not history:
        raise ModelNotFound(f"model {name!r} has no previous {alias} to roll back to")
    previous = history[-1]
    load_check(cfg, name, previous, _example_of(cfg, name, previous))
    mlflow_client.set_registered_model_tag(name, _history_key(alias), json.dumps(history))
    mlflow_client.set_registered_model_alias(name, alias, str(previous))
    return current, previous


def _example_of(cfg: KilnConfig, name: str, version: int) -> pd.DataFrame:
    """The input example stored with a version, to load-check it."""
    from mlflow.models import Model

    local = mlflow_store.version_folder(cfg.tracking_uri, name, version)
    return Model.load(local).load_input_example(local)


@dataclass(frozen=True)
class ServingTarget:
    name: str
    version: int  # what the alias points at now, or the pinned version
    alias: str | None  # None: pinned to `version`; else the endpoint follows this alias


def champion_ref(cfg: KilnConfig) -> str:
    """`NAME@ALIAS` of the config's model: what `kiln run` serves and `kiln serve` serves by default."""
    return f"{cfg.registry.model_name}@{cfg.registry.alias}"


def lineage(metric: str, best) -> dict[str, str]:
    """Where a version's weights come from: the trial, its epoch and that epoch's score (a TrialSummary)."""
    return {
        "best_trial_id": best.trial_id,
        "best_epoch": str(best.best_epoch),
        f"best_{metric}": f"{best.best_metric:.6f}",
        "checkpoint": storage.shown(best.best_checkpoint or ""),
    }


def serving_target(cfg: KilnConfig, ref: str) -> ServingTarget:
    """`NAME@ALIAS` (or `NAME`, meaning registry.alias) follows the alias; `NAME/VERSION` is pinned."""
    name, version = resolve(cfg, ref)
    if "/" in ref and "@" not in ref:
        return ServingTarget(name, version, None)
    return ServingTarget(name, version, ref.split("@", 1)[1] if "@" in ref else cfg.registry.alias)


def resolve(cfg: KilnConfig, ref: str) -> tuple[str, int]:
    """`NAME`, `NAME@ALIAS` or `NAME/VERSION` to (name, version), from this store's registry only."""
    mlflow_client = mlflow_runs.client(cfg)
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
        raise ModelNotFound(
            f"registry.alias {alias!r} not found for model {name!r} in {cfg.tracking_uri}; run 'kiln run CONFIG' first"
        ) from None
