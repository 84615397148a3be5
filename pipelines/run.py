"""The stage order of `kiln run`, readable as a table of contents."""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass, field

import pandas as pd

from pipelines import console, evaluate, ingest, registry, resources, runtime, storage, tracking, tune
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
        resources.max_concurrent_trials(cfg, cluster_cpus=runtime.local_cpus(cfg), cluster_gpus=runtime.local_gpus())


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
    predicted_epoch_s = predicted_epoch_time(cfg, splits)
    plan_tags = {"kiln.plan.predicted_epoch_time_s": f"{predicted_epoch_s:.4f}"}
    parent = tracking.start_parent(cfg, run_name=search_name,
                                   tags={"kiln.data_fingerprint": splits.fingerprint, **plan_tags})
    try:
        with console.stage("search", timings):
            result = tune.search(cfg, splits, search_name=search_name, callbacks=[
                tracking.trial_callback(cfg, parent, plan_tags),
                console.progress_callback(cfg.tune.metric, cfg.tune.num_samples)])
        console.say(console.trials_table(result.trials, cfg.tune.metric, result.best.trial_id))
        measured_epoch_s = statistics.median(result.epoch_times_s)
        error = (predicted_epoch_s - measured_epoch_s) / measured_epoch_s
        tracking.log_metrics(cfg, parent, {"plan_predicted_epoch_time_s": predicted_epoch_s,
                                           "measured_median_epoch_time_s": measured_epoch_s,
                                           "plan_epoch_error": error})
        console.say(f"  plan: predicted epoch {predicted_epoch_s:.3f} s, measured median "
                    f"{measured_epoch_s:.3f} s ({error:+.0%})")

        with console.stage("evaluate", timings):
            accuracy = evaluate.test_accuracy(result.best.best_checkpoint, splits.test_x, splits.test_y)
            tracking.log_metrics(cfg, parent, {"test_accuracy": accuracy,
                                               f"best_{cfg.tune.metric}": result.best.best_metric})
            console.say(f"  best trial {result.best.trial_id}: {cfg.tune.metric}={result.best.best_metric:.4f}, "
                        f"test_accuracy={accuracy:.4f}")

        with console.stage("register", timings):
            registered = registry.register(
                cfg, checkpoint_dir=result.best.best_checkpoint, test_frame=splits.test_frame,
                test_labels=splits.test_labels, parent_run_id=parent, test_accuracy=accuracy,
                data_fingerprint=splits.fingerprint)
            moved = f"alias '{cfg.registry.alias}' -> v{registered.version}" if registered.promoted else \
                f"alias '{cfg.registry.alias}' unchanged"
            console.say(f"  {registered.name} v{registered.version} registered; {moved} ({registered.reason})")
            freed = storage.prune_checkpoints(cfg.storage_root, [t.trial_id for t in result.trials],
                                              keep=result.best.trial_id)
            console.say(f"  pruned other trials' checkpoints ({freed / 2**20:.1f} MiB freed)")
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


def predicted_epoch_time(cfg: KilnConfig, splits: ingest.Splits) -> float:
    """`kiln plan`'s epoch time for this config with the recorded local profile (no calibration)."""
    from pipelines import plan

    flops = plan.count_flops(cfg, splits.input_dim, splits.num_classes)
    prediction = plan.predict(cfg, plan.load_profile("local"), flops, num_workers=cfg.train.num_workers,
                              train_rows=splits.num_rows["train"])
    return prediction.epoch_time_s


def start_serving(cfg: KilnConfig, ref: str) -> str:
    """Serve a registered model, resolved in this store's registry only."""
    from serving.app import deploy

    name, version = registry.resolve(cfg, ref)
    url = deploy(tracking_uri=cfg.tracking_uri, name=name, version=version,
                 host=cfg.serve.host, port=cfg.serve.port, num_cpus=cfg.serve.num_cpus)
    console.say(f"  serving {name} v{version} at {url}")
    return url
