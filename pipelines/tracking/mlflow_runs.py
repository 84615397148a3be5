"""MLflow tracking: one parent run per `kiln run`, one nested run per trial, written by the driver only.

SQLite allows one writer at a time, so every write goes through this process: trial metrics arrive
through a Tune callback (driver side) instead of being logged from the workers.
"""

from __future__ import annotations

import re
from typing import Any

import yaml

from pipelines.cluster import storage
from pipelines.config import REPORTED_METRICS, KilnConfig
from pipelines.tracking import mlflow_store

# Every epoch's metrics, and once per Train run the seconds from the trial's start to its first training step.
LOGGED_METRICS = (*REPORTED_METRICS, "trial_startup_s")


def client(cfg: KilnConfig):
    """The config's store (mlflow_store.client); a local store's folder is made on first use."""
    if cfg.tracking.uri is None:
        cfg.storage_root.mkdir(parents=True, exist_ok=True)
    return mlflow_store.client(cfg.tracking_uri)


# MLflow 3's UI marks an experiment's kind with this tag: "custom_model_development" is model training (runs,
# metrics, compare), not GenAI (traces, token usage).
EXPERIMENT_KIND = {"mlflow.experimentKind": "custom_model_development"}
# Which side of MLflow 3.17's UI a page opens on is a per-browser switch (GenAI by default, kept in local storage)
# that a URL parameter sets: without it `#/experiments/N` lands on the GenAI overview whatever the tag says.
TRAINING_VIEW = "workflowType=machine_learning"


def experiment_id(cfg: KilnConfig) -> str:
    """The run's experiment, opening on MLflow's training view; local stores keep artifacts under storage.root,
    not the working dir."""
    mlflow_client = client(cfg)
    found = mlflow_client.get_experiment_by_name(cfg.experiment_name)
    if found:
        if found.tags.get("mlflow.experimentKind") is None:  # made before Kiln set it, or by someone else
            mlflow_client.set_experiment_tag(found.experiment_id, *next(iter(EXPERIMENT_KIND.items())))
        return found.experiment_id
    location = (cfg.storage_root / "mlartifacts").as_uri() if cfg.tracking.uri is None else None
    return mlflow_client.create_experiment(cfg.experiment_name, artifact_location=location, tags=EXPERIMENT_KIND)


def ui_links(cfg: KilnConfig, base_url: str) -> list[str]:
    """Links into the MLflow UI for the config's latest search: its parent run, and the comparison of its trials
    (metric curves per epoch, parallel coordinates of the searched parameters). Empty when there is none."""
    import json
    import urllib.parse

    mlflow_client = client(cfg)
    found = mlflow_client.get_experiment_by_name(cfg.experiment_name)
    if found is None:
        return []
    eid = found.experiment_id
    parents = mlflow_client.search_runs(
        [eid], filter_string="tags.`kiln.kind` = 'search'", order_by=["attributes.start_time DESC"], max_results=1
    )
    if not parents:
        return []
    parent = parents[0].info.run_id
    trials = mlflow_client.search_runs([eid], filter_string=f"tags.mlflow.parentRunId = '{parent}'", max_results=500)
    links = [
        f"runs: {base_url}/#/experiments/{eid}/runs?{TRAINING_VIEW}",
        f"parent run: {base_url}/#/experiments/{eid}/runs/{parent}?{TRAINING_VIEW}",
    ]
    if trials:
        runs = urllib.parse.quote(json.dumps([t.info.run_id for t in trials]))
        links.append(
            f"compare its {len(trials)} trials: {base_url}/#/compare-runs?runs={runs}"
            f"&experiments={urllib.parse.quote(json.dumps([eid]))}&{TRAINING_VIEW}"
        )
    return links


def dataset_inputs(splits: dict[str, Any], *, source: str, label: str) -> list:
    """MLflow dataset inputs for the splits ({"train": frame, ...}, each with the label column): digest, row
    count, schema and source, tagged with their context, so the run page and the Dataset column show what a
    model was trained and scored on."""
    import mlflow.data
    from mlflow.entities import DatasetInput, InputTag

    inputs = []
    for context, frame in splits.items():
        dataset = mlflow.data.from_pandas(frame, source=storage.shown(source), targets=label, name=context)
        inputs.append(DatasetInput(dataset._to_mlflow_entity(), tags=[InputTag("mlflow.data.context", context)]))
    return inputs


def log_inputs(cfg: KilnConfig, run_id: str, inputs: list) -> None:
    if inputs:
        client(cfg).log_inputs(run_id, datasets=inputs)


PARAM_KEY_OTHER = re.compile(r"[^/\w.\- :]")  # characters MLflow refuses in a param key


def flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Dotted keys, as MLflow takes them for params: a column name's other characters become "_"."""
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        path = prefix + PARAM_KEY_OTHER.sub("_", str(key))
        if isinstance(value, dict) and value:
            flat.update(flatten(value, path + "."))
        else:
            flat[path] = value
    return flat


def trial_params(cfg: KilnConfig) -> dict[str, str]:
    """The same keys on every trial run, so MLflow's compare view lines them up."""
    raw = storage.masked(cfg.model_dump(include={"model", "train", "data"}))
    return {k: str(v)[:500] for k, v in flatten(raw).items()}


def start_parent(cfg: KilnConfig, *, run_name: str, tags: dict[str, str]) -> str:
    mlflow_client = client(cfg)
    run = mlflow_client.create_run(experiment_id(cfg), run_name=run_name, tags={"kiln.kind": "search", **tags})
    run_id = run.info.run_id
    mlflow_client.log_text(run_id, yaml.safe_dump(storage.masked(cfg.model_dump()), sort_keys=False), "config.yaml")
    for key, value in flatten(storage.masked(cfg.model_dump(include={"data", "tune", "registry", "train"}))).items():
        mlflow_client.log_param(run_id, key, str(value)[:500])
    return run_id


def log_metrics(cfg: KilnConfig, run_id: str, metrics: dict[str, float], step: int = 0) -> None:
    """One write for all of an epoch's metrics (the driver logs every trial's epochs while it runs the search)."""
    import time

    from mlflow.entities import Metric

    now = int(time.time() * 1000)
    batch = [Metric(key, float(value), now, step) for key, value in metrics.items()]
    if batch:
        client(cfg).log_batch(run_id, metrics=batch)


def log_dict(cfg: KilnConfig, run_id: str, payload: dict, artifact_file: str) -> None:
    client(cfg).log_dict(run_id, payload, artifact_file)


def set_tags(cfg: KilnConfig, run_id: str, tags: dict[str, str]) -> None:
    mlflow_client = client(cfg)
    for key, value in tags.items():
        mlflow_client.set_tag(run_id, key, value)


def end_run(cfg: KilnConfig, run_id: str, status: str = "FINISHED") -> None:
    client(cfg).set_terminated(run_id, status=status)


def find_trial_run(cfg: KilnConfig, parent_run_id: str, trial_id: str) -> str | None:
    found = client(cfg).search_runs(
        [experiment_id(cfg)],
        filter_string=f"tags.mlflow.parentRunId = '{parent_run_id}' and tags.`kiln.trial_id` = '{trial_id}'",
    )
    return found[0].info.run_id if found else None


def end_lost_trial_runs(cfg: KilnConfig, parent_run_id: str, trial_ids: set[str]) -> list[str]:
    """Trial runs under the parent still RUNNING for a trial the search no longer has, ended as KILLED and tagged
    kiln.lost; their ids."""
    found = client(cfg).search_runs(
        [experiment_id(cfg)],
        filter_string=f"tags.mlflow.parentRunId = '{parent_run_id}' and attributes.status = 'RUNNING'",
    )
    lost = [r.info.run_id for r in found if r.data.tags.get("kiln.trial_id") not in trial_ids]
    for run_id in lost:
        set_tags(cfg, run_id, {"kiln.lost": "the search's driver was killed before Tune saved this trial"})
        end_run(cfg, run_id, "KILLED")
    return lost


def last_epoch_logged(cfg: KilnConfig, run_id: str) -> int:
    return max((m.step for m in client(cfg).get_metric_history(run_id, cfg.tune.metric)), default=0)


def reopen(cfg: KilnConfig, run_id: str) -> None:
    """A resumed search continues its parent run instead of starting another."""
    client(cfg).update_run(run_id, status="RUNNING")
