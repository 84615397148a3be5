"""The stage order of `kiln run`, readable as a table of contents."""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass, field

import pandas as pd

from pipelines import console, evaluate, ingest, registry, resources, runtime, searches, storage, tracking, tune
from pipelines.config import ConfigError, KilnConfig


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


def run(cfg: KilnConfig, *, serve: bool = True, verbose: bool = False, resume: bool = False) -> RunResult:
    storage.check_reachable(cfg)  # the ledger check_resume reads lives there
    previous = check_resume(cfg, resume)
    preflight(cfg)
    timings: dict[str, float] = {}
    with console.stage("runtime", timings):
        runtime.start(cfg, verbose=verbose)
    with console.stage("ingest", timings):
        splits = ingest.ingest(cfg)
        console.say(f"  {sum(splits.num_rows.values())} rows, {splits.input_dim} features, "
                    f"{splits.num_classes} classes; split {splits.num_rows}")
        console.say("  trials keep train and val in memory" if splits.arrays is not None else
                    f"  train and val stream through Ray Data each epoch (over train.cache_shard_mb="
                    f"{cfg.train.cache_shard_mb})")

    predicted_epoch_s = predicted_epoch_time(cfg, splits)
    plan_tags = {"kiln.plan.predicted_epoch_time_s": f"{predicted_epoch_s:.4f}"}
    if resume:
        state = previous.with_status(searches.RUNNING)
        tracking.reopen(cfg, state.parent_run_id)
        console.say(f"  resuming search {state.name} (MLflow run {state.parent_run_id})")
    else:
        name = f"{cfg.name}-{time.strftime('%Y%m%d-%H%M%S')}"
        parent_run_id = tracking.start_parent(cfg, run_name=name,
                                              tags={"kiln.data_fingerprint": splits.fingerprint, **plan_tags})
        state = searches.new(cfg, parent_run_id, name)
    searches.save(cfg, state)
    parent = state.parent_run_id
    try:
        with console.stage("search", timings):
            result = tune.search(cfg, splits, search_name=state.name, resume=resume, callbacks=[
                tracking.trial_callback(cfg, parent, plan_tags),
                console.progress_callback(cfg.tune.metric, cfg.tune.mode, cfg.tune.num_samples, cfg.train.epochs)])
        console.say(console.trials_table(result.trials, cfg.tune.metric, result.best.trial_id))
        measured_epoch_s = statistics.median(result.epoch_times_s)
        error = (predicted_epoch_s - measured_epoch_s) / measured_epoch_s
        tracking.log_metrics(cfg, parent, {"plan_predicted_epoch_time_s": predicted_epoch_s,
                                           "measured_median_epoch_time_s": measured_epoch_s,
                                           "plan_epoch_error": error})
        console.say(f"  plan: predicted epoch {predicted_epoch_s:.3f} s, measured median "
                    f"{measured_epoch_s:.3f} s ({error:+.0%})")

        with console.stage("evaluate", timings):
            best_checkpoint = storage.local_checkpoint(cfg, result.best.best_checkpoint)
            report = evaluate.test_report(best_checkpoint, splits.test_x, splits.test_y)
            accuracy = report.accuracy
            tracking.log_dict(cfg, parent, report.to_dict(), "test_report.json")
            tracking.log_metrics(cfg, parent, {"test_accuracy": accuracy,
                                               f"best_{cfg.tune.metric}": result.best.best_metric})
            console.say(f"  best trial {result.best.trial_id}, epoch {result.best.best_epoch}: "
                        f"{cfg.tune.metric}={result.best.best_metric:.4f}, test_accuracy={accuracy:.4f}")

        with console.stage("register", timings):
            registered = registry.register(
                cfg, checkpoint_dir=best_checkpoint, test_frame=splits.test_frame,
                test_labels=splits.test_labels, parent_run_id=parent, test_accuracy=accuracy,
                data_fingerprint=splits.fingerprint, lineage=lineage(cfg, result.best))
            moved = f"alias '{cfg.registry.alias}' -> v{registered.version}" if registered.promoted else \
                f"alias '{cfg.registry.alias}' unchanged"
            console.say(f"  {registered.name} v{registered.version} registered; {moved} ({registered.reason})")
            freed = storage.prune_checkpoints(cfg, [t.trial_id for t in result.trials],
                                              keep=result.best.trial_id)
            console.say(f"  pruned other trials' checkpoints ({freed / 2**20:.1f} MiB freed)")
        tracking.set_tags(cfg, parent, {"kiln.best_trial_id": result.best.trial_id,
                                        "kiln.best_epoch": str(result.best.best_epoch),
                                        "mlflow.note.content": describe_search(cfg, result, accuracy, registered)})
        tracking.log_metrics(cfg, parent, {f"stage_{k}_s": v for k, v in timings.items()})
        tracking.end_run(cfg, parent, "FINISHED")
        searches.save(cfg, state.with_status(searches.FINISHED))
        write_report(cfg, parent)
    except KeyboardInterrupt:  # Ctrl-C, or Tune stopped early: the search can be resumed
        tracking.end_run(cfg, parent, "KILLED")
        searches.save(cfg, state.with_status(searches.INTERRUPTED))
        raise tune.Interrupted(state.name) from None
    except BaseException:
        tracking.end_run(cfg, parent, "FAILED")
        searches.save(cfg, state.with_status(searches.FAILED))
        raise

    run_result = RunResult(parent, result, accuracy, registered, splits.example, timings=timings)
    if serve and cfg.serve.enabled:
        with console.stage("serve", timings):
            run_result.endpoint = start_serving(cfg, f"{cfg.registry.model_name}@{cfg.registry.alias}")
    return run_result


def check_resume(cfg: KilnConfig, resume: bool) -> searches.SearchState | None:
    """--resume needs an interrupted search of the same config; a plain run says when it leaves one behind."""
    previous = searches.latest(cfg)
    if not resume:
        if searches.unfinished(previous):
            console.say(f"note: search {previous.name} did not finish; this starts a new search "
                        "(add --resume to continue that one instead)")
        return previous
    if not searches.unfinished(previous):
        raise ConfigError(f"--resume: no unfinished search of {cfg.name!r} under "
                          f"{storage.shown(cfg.storage.root)}; "
                          "run without --resume to start one")
    if previous.config_hash != searches.config_hash(cfg):
        raise ConfigError(f"--resume: the config changed since search {previous.name} started; "
                          "run without --resume to start a new search")
    return previous


def lineage(cfg: KilnConfig, best: tune.TrialSummary) -> dict[str, str]:
    """Where the registered weights come from: the trial, its epoch and that epoch's score."""
    return {"best_trial_id": best.trial_id, "best_epoch": str(best.best_epoch),
            f"best_{cfg.tune.metric}": f"{best.best_metric:.6f}",
            "checkpoint": storage.shown(best.best_checkpoint or "")}


def describe_search(cfg: KilnConfig, result: tune.SearchResult, accuracy: float,
                    registered: registry.Registered) -> str:
    """The parent run's description in the MLflow UI: the search in a few lines."""
    stopped = sum(t.stopped_early for t in result.trials)
    epochs = sum(t.epochs_run for t in result.trials)
    return (f"{len(result.trials)} trials ({stopped} stopped early by {cfg.tune.scheduler.name}), "
            f"{epochs} trial-epochs of {len(result.trials) * cfg.train.epochs} possible.\n"
            f"Best: trial {result.best.trial_id} (epoch {result.best.best_epoch}), "
            f"{cfg.tune.metric}={result.best.best_metric:.4f}, "
            f"{console.describe_sample(result.best.sample)}; test_accuracy={accuracy:.4f}.\n"
            f"Registered {registered.name} v{registered.version}; "
            f"{'promoted' if registered.promoted else 'not promoted'}: {registered.reason}.")


def write_report(cfg: KilnConfig, parent_run_id: str) -> None:
    """The HTML report; a failure here is reported, never fatal to a finished run."""
    from pipelines import report

    try:
        path = report.build(cfg, parent_run_id)
        console.say(f"  report: {path}")
    except Exception as err:
        console.say(f"  report not written ({type(err).__name__}: {err}); retry with: kiln report {parent_run_id}")


def predicted_epoch_time(cfg: KilnConfig, splits: ingest.Splits) -> float:
    """`kiln plan`'s epoch time for this config with the recorded local profile (no calibration)."""
    from pipelines import plan

    flops = plan.count_flops(cfg, splits.input_dim, splits.num_classes)
    prediction = plan.predict(cfg, plan.load_profile("local"), flops, num_workers=cfg.train.num_workers,
                              train_rows=splits.num_rows["train"])
    return prediction.epoch_time_s


def start_serving(cfg: KilnConfig, ref: str) -> str:
    """Serve a registered model, resolved in this store's registry only. `NAME@ALIAS` follows the alias
    (the endpoint switches versions when it moves); `NAME/VERSION` stays pinned."""
    from serving.app import deploy

    target = registry.serving_target(cfg, ref)  # fails early with a clear message
    url = deploy(cfg, name=target.name, alias=target.alias, version=None if target.alias else target.version)
    follows = f" (follows @{target.alias})" if target.alias else ""
    console.say(f"  serving {target.name} v{target.version}{follows} at {url}")
    return url
