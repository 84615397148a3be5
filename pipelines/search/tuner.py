"""The search: Ray Tune over trials (ASHA or FIFO), each one Ray Train run of a sampled config."""

from __future__ import annotations

import contextlib
import math
import re
import threading
from dataclasses import dataclass, field, replace
from typing import Any

from pipelines import console, signals
from pipelines.cluster import storage
from pipelines.config import KilnConfig
from pipelines.errors import SearchInterrupted
from pipelines.search import resources, scheduler, signing
from pipelines.search.ranking import CHECKPOINT_PATH_KEY, Candidate, choose_existing, rank
from pipelines.search.space import parse_search_space, to_tune_domain


@dataclass(frozen=True)
class TrialSummary:
    trial_id: str
    sample: dict[str, Any]
    epochs_run: int
    best_metric: float | None
    best_checkpoint: str | None
    stopped_early: bool
    error: str | None = None
    best_epoch: int | None = None
    candidates: tuple[Candidate, ...] = ()  # every reported checkpoint, best first (ranking.rank)
    best_val_loss: float = math.inf  # val_loss at the best checkpoint: breaks ties between trials


@dataclass(frozen=True)
class SearchResult:
    trials: list[TrialSummary]
    best: TrialSummary
    max_concurrent: int
    epoch_times_s: list[float]  # every epoch of every trial, as measured inside the loop
    notes: list[str] = field(default_factory=list)  # what the user should know, one line each


def search(
    cfg: KilnConfig, splits, *, search_name: str, callbacks: list[Any] = (), resume: bool = False
) -> SearchResult:
    """Run the search (or continue an interrupted one: finished trials are kept, interrupted
    trials restart and their Train runs resume from their last checkpoints)."""
    import ray
    from ray import tune

    from pipelines.search.reaper import OrphanReaper
    from pipelines.search.trial import run_trial

    cluster = ray.cluster_resources()
    cpus, gpus = cluster.get("CPU", 0.0), cluster.get("GPU", 0.0)
    concurrency = resources.max_concurrent_trials(cfg, cluster_cpus=cpus, cluster_gpus=gpus)
    if cfg.tune.scheduler.name == "pbt" and min(concurrency, cfg.tune.num_samples) < 2:
        console.note(
            f"note: pbt with {min(concurrency, cfg.tune.num_samples)} trial at a time: a finished trial cannot be "
            "copied, so no trial ever copies another; lower train.cpus_per_worker (e.g. 0.5) or add CPUs"
        )
    use_gpu = resources.resolve_use_gpu(cfg, gpus)
    trainable = tune.with_resources(
        tune.with_parameters(
            run_trial,
            base=cfg,
            preprocessing=splits.preprocessing,
            datasets={"train": splits.train, "val": splits.val},
            arrays=splits.arrays,
            use_gpu=use_gpu,
            train_rows=splits.num_rows["train"],
        ),
        resources.trial_resources(cfg, use_gpu),
    )
    where = storage.ray_storage(cfg)
    signature = signing.SearchSignature.of(cfg, search_name)
    if resume:  # checked again here (run.check_signed did before the runtime started): the last look before Tune
        signature.check()
        tuner = tune.Tuner.restore(
            f"{where['storage_path']}/{search_name}",
            trainable,
            resume_unfinished=True,
            resume_errored=True,
            storage_filesystem=where["storage_filesystem"],
        )
    else:
        signer = signing.signing_callback(where["storage_filesystem"], signature.folder, search_name)
        tuner = build_tuner(
            cfg, trainable, search_name=search_name, concurrency=concurrency, callbacks=[*callbacks, signer]
        )
    signature.add_stored(signing.TUNER_STATE)  # Tune writes it straight to storage, when the Tuner is made
    signature.save()
    # Only Train runs leave worker groups behind, and only Kiln's own runtime's are Kiln's to remove.
    reap = cfg.ray.address is None and not resources.in_trial_actor(cfg)
    main_thread = threading.current_thread() is threading.main_thread()
    if main_thread:
        signals.install()  # what Tune's SIGINT handler puts back when it fires
    try:
        with OrphanReaper() if reap else contextlib.nullcontext():
            grid = tuner.fit()
        # Tune ends an interrupted search gracefully: its trials may all read as ended, the rest never started.
        stopped = main_thread and signals.stop_requested()
    finally:
        if main_thread:
            signals.install()  # Tune leaves its SIGINT handler behind, and a later Ctrl-C would only set its flag
    if stopped or grid.num_terminated + grid.num_errors < len(grid):
        raise SearchInterrupted(search_name)
    trials = [summarize(result, cfg) for result in grid]
    finished = [t for t in trials if t.best_checkpoint is not None]
    if not finished:
        errors = "; ".join(t.error for t in trials if t.error) or "no trial reported a checkpoint"
        raise RuntimeError(f"every trial failed: {errors[:500]}")
    best, note = with_existing_checkpoint(cfg, pick_best(finished, cfg.tune.mode))
    trials = [best if t.trial_id == best.trial_id else t for t in trials]
    epoch_times = [
        float(v)
        for r in grid
        if r.metrics_dataframe is not None and "epoch_time_s" in r.metrics_dataframe
        for v in r.metrics_dataframe["epoch_time_s"].dropna()
    ]
    return SearchResult(trials, best, concurrency, epoch_times, notes=[note] if note else [])


def build_tuner(cfg: KilnConfig, trainable, *, search_name: str, concurrency: int, callbacks: list[Any]):
    from ray import tune

    from pipelines.search.sampler import search_algorithm

    plain = cfg.tune.search == "tpe"
    domains = parse_search_space(cfg.tune.search_space)
    param_space = {key: to_tune_domain(d, plain_choices=plain) for key, d in domains.items()}
    in_actor = resources.in_trial_actor(cfg)
    # A trial trained in its actor checkpoints and restarts through Tune, as a Train run does through Train.
    in_actor_run = (
        dict(
            checkpoint_config=tune.CheckpointConfig(
                # pbt copies a trial's latest checkpoint while the trial goes on: none is deleted before the end
                num_to_keep=None if cfg.tune.scheduler.name == "pbt" else cfg.train.keep_checkpoints,
                checkpoint_score_attribute=cfg.tune.metric,
                checkpoint_score_order=cfg.tune.mode,
            ),
            failure_config=tune.FailureConfig(max_failures=cfg.train.max_failures),
        )
        if in_actor
        else {}
    )
    # Tune counts a paused trial against a concurrency cap, so under promotion a cap of N with N trials paused
    # would start nothing: there, the trials' resources alone decide how many run at once.
    cap = None if cfg.tune.scheduler.name == "asha_promote" else concurrency
    return tune.Tuner(
        trainable,
        param_space=param_space,
        tune_config=tune.TuneConfig(
            metric=cfg.tune.metric,
            mode=cfg.tune.mode,
            scheduler=scheduler.build_scheduler(cfg, search_name),
            num_samples=cfg.tune.num_samples,
            max_concurrent_trials=cap,
            reuse_actors=in_actor,
            search_alg=search_algorithm(cfg, cap),
        ),
        run_config=tune.RunConfig(
            name=search_name, **storage.ray_storage(cfg), verbose=0, callbacks=list(callbacks), **in_actor_run
        ),
    )


def summarize(result, cfg: KilnConfig) -> TrialSummary:
    """One trial's outcome: its best checkpointed epoch (by tune.metric, ranked as Ray Train keeps
    checkpoints) and whether ASHA cut it short."""
    frame = result.metrics_dataframe
    trial_id = trial_id_of(result.path)
    sample = {k: v for k, v in (result.config or {}).items()}
    error = f"{type(result.error).__name__}: {result.error}".splitlines()[0] if result.error else None
    if frame is None or frame.empty or cfg.tune.metric not in frame:
        return TrialSummary(trial_id, sample, 0, None, None, False, error)
    epochs = frame["epoch"] if "epoch" in frame else frame["training_iteration"]
    paths = checkpoint_paths(frame, result.path)
    candidates = rank(
        (
            Candidate(int(epoch), float(value), path if isinstance(path, str) else None)
            for epoch, value, path in zip(epochs, frame[cfg.tune.metric], paths, strict=True)
            if value == value and isinstance(path, str)
        ),
        cfg.tune.mode,
    )
    best = candidates[0] if candidates else None
    epochs_run = int(epochs.max())
    best_val_loss = math.inf
    if best is not None and "val_loss" in frame:
        at_best = frame["val_loss"][(epochs == best.epoch).to_numpy() & (paths == best.checkpoint).to_numpy()]
        best_val_loss = float(at_best.iloc[-1]) if len(at_best) and at_best.iloc[-1] == at_best.iloc[-1] else math.inf
    return TrialSummary(
        trial_id=str(frame["trial_id"].iloc[-1]) if "trial_id" in frame else trial_id,
        sample=sample,
        epochs_run=epochs_run,
        best_metric=best.value if best else None,
        best_checkpoint=best.checkpoint if best else None,
        stopped_early=error is None and epochs_run < cfg.train.epochs,
        error=error,
        best_epoch=best.epoch if best else None,
        candidates=tuple(candidates),
        best_val_loss=best_val_loss,
    )


def checkpoint_paths(frame, trial_path: str | None):
    """Each report's persisted checkpoint, or None: a Train run's path (trial.ReportQueue adds it), or a folder of
    the trial's own (Tune's checkpoint_dir_name) when it trained in its actor."""
    import pandas as pd

    if CHECKPOINT_PATH_KEY in frame and frame[CHECKPOINT_PATH_KEY].map(lambda p: isinstance(p, str)).any():
        return frame[CHECKPOINT_PATH_KEY]
    if "checkpoint_dir_name" in frame and trial_path:
        named = [f"{trial_path.rstrip('/')}/{n}" if isinstance(n, str) else None for n in frame["checkpoint_dir_name"]]
        return pd.Series(named, index=frame.index, dtype=object)
    return pd.Series([None] * len(frame), index=frame.index, dtype=object)


def trial_id_of(path: str | None) -> str:
    """The trial id in a Tune trial folder's name (`run_trial_84839_00007_7_<params>_<date>_<time>`), for a
    trial that reported nothing."""
    found = re.search(r"_([0-9a-f]{5}_\d{5})_\d+_", path or "")
    return found.group(1) if found else "?"


def with_existing_checkpoint(cfg: KilnConfig, trial: TrialSummary) -> tuple[TrialSummary, str | None]:
    """The trial as it can be evaluated: its best checkpoint that still exists in storage, and a one-line
    note when that is not the best-ranked one; an error naming the path when none exists."""
    from pipelines.model import checkpoint  # torch, only once a search has a best trial

    choice = choose_existing(list(trial.candidates), lambda path: checkpoint.exists(cfg, path))
    if choice.chosen is None:
        raise RuntimeError(
            f"trial {trial.trial_id}: no checkpoint left to evaluate; expected one at "
            f"{storage.shown(trial.best_checkpoint or '?')}"
        )
    note = f"note: trial {trial.trial_id}: {choice.note}" if choice.note else None
    return replace(
        trial, best_metric=choice.chosen.value, best_checkpoint=choice.chosen.checkpoint, best_epoch=choice.chosen.epoch
    ), note


def pick_best(trials: list[TrialSummary], mode: str) -> TrialSummary:
    """Best metric wins; ties (an accuracy on a small val split ties often, between a model trained one epoch
    and one trained ten) go to the lower val_loss at the best checkpoint, then to fewer epochs, then the first."""
    sign = -1.0 if mode == "max" else 1.0
    return min(
        trials,
        key=lambda t: (
            sign * t.best_metric if math.isfinite(t.best_metric) else math.inf,
            t.best_val_loss,
            t.epochs_run,
        ),
    )
