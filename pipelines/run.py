"""The stage order of `kiln run`, readable as a table of contents."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import pandas as pd

from pipelines import console, evaluate, ingest, registry, resources, runtime, tracking, tune
from pipelines.config import KilnConfig


@dataclass
class RunResult:
    parent_run_id: str
    search: tune.SearchResult
    test_accuracy: float
    registered: registry.Registered
    example: pd.DataFrame
    endpoint: str | None = None
    timings: dict[str, float] = field(default_factory=dict)


def preflight(cfg: KilnConfig) -> None:
    """Checks that need no cluster: a trial that can never fit fails here, before anything starts."""
    if cfg.ray.address is None:
        resources.max_concurrent_trials(cfg, cluster_cpus=runtime.local_cpus(cfg), cluster_gpus=0)


def run(cfg: KilnConfig, *, serve: bool = True, verbose: bool = False) -> RunResult:
    preflight(cfg)
    timings: dict[str, float] = {}
    with console.stage("runtime", timings):
        runtime.start(cfg, verbose=verbose)
    with console.stage("ingest", timings):
        splits = ingest.ingest(cfg)
        console.say(f"  {sum(splits.num_rows.values())} rows, {splits.input_dim} features, "
                    f"{splits.num_classes} classes; split {splits.num_rows}")

    search_name = f"{cfg.name}-{time.strftime('%Y%m%d-%H%M%S')}"
    parent = tracking.start_parent(cfg, run_name=search_name, tags={"kiln.data_fingerprint": splits.fingerprint})
    try:
        with console.stage("search", timings):
            result = tune.search(cfg, splits, search_name=search_name, callbacks=[
                tracking.trial_callback(cfg, parent),
                console.progress_callback(cfg.tune.metric, cfg.tune.num_samples)])
        console.say(console.trials_table(result.trials, cfg.tune.metric, result.best.trial_id))

        with console.stage("evaluate", timings):
            accuracy = evaluate.test_accuracy(result.best.best_checkpoint, splits.test_x, splits.test_y)
            tracking.log_metrics(cfg, parent, {"test_accuracy": accuracy,
                                               f"best_{cfg.tune.metric}": result.best.best_metric})
            console.say(f"  best trial {result.best.trial_id}: {cfg.tune.metric}={result.best.best_metric:.4f}, "
                        f"test_accuracy={accuracy:.4f}")

        with console.stage("register", timings):
            registered = registry.register(
                cfg, checkpoint_dir=result.best.best_checkpoint, example=splits.example,
                parent_run_id=parent, test_accuracy=accuracy, data_fingerprint=splits.fingerprint)
            moved = f"alias '{cfg.registry.alias}' -> v{registered.version}" if registered.promoted else \
                f"alias '{cfg.registry.alias}' unchanged"
            console.say(f"  {registered.name} v{registered.version} registered; {moved} ({registered.reason})")
        tracking.log_metrics(cfg, parent, {f"stage_{k}_s": v for k, v in timings.items()})
        tracking.end_run(cfg, parent, "FINISHED")
    except BaseException as err:
        tracking.end_run(cfg, parent, "KILLED" if isinstance(err, KeyboardInterrupt) else "FAILED")
        raise

    run_result = RunResult(parent, result, accuracy, registered, splits.example, timings=timings)
    if serve and cfg.serve.enabled:
        with console.stage("serve", timings):
            run_result.endpoint = start_serving(cfg, f"{cfg.registry.model_name}@{cfg.registry.alias}")
    return run_result


def start_serving(cfg: KilnConfig, ref: str) -> str:
    """Serve a registered model, resolved in this store's registry only."""
    from serving.app import deploy

    name, version = registry.resolve(cfg, ref)
    url = deploy(tracking_uri=cfg.tracking_uri, name=name, version=version,
                 host=cfg.serve.host, port=cfg.serve.port, num_cpus=cfg.serve.num_cpus)
    console.say(f"  serving {name} v{version} at {url}")
    return url
