"""The ASHA search: each trial is one distributed Ray Train run of the sampled config."""

from __future__ import annotations

import contextlib
import math
import queue as queue_module
import threading
import time
from dataclasses import dataclass, replace
from typing import Any

from pipelines import console, resources, storage
from pipelines.config import KilnConfig
from pipelines.ranking import Candidate, choose_existing, rank
from pipelines.search_space import Domain, apply_sample, parse_search_space

CHECKPOINT_PATH_KEY = "checkpoint_path"  # each report's persisted checkpoint (tune_reports.ReportQueue)


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


@dataclass(frozen=True)
class SearchResult:
    trials: list[TrialSummary]
    best: TrialSummary
    max_concurrent: int
    epoch_times_s: list[float]  # every epoch of every trial, as measured inside the loop


def to_tune_domain(domain: Domain):
    from ray import tune

    if domain.kind == "choice":
        return tune.choice(list(domain.args))
    return getattr(tune, domain.kind)(*domain.args)


def run_trial(sample: dict[str, Any], *, base: dict[str, Any], preprocessing: dict[str, Any],
              datasets: dict[str, Any], arrays: dict[str, Any] | None, use_gpu: bool) -> None:
    """The Tune trainable: build the trial's config, run its Train run to the end (or until ASHA stops it).

    The Train run's reports reach Tune through this thread (`forward_reports`), not through Ray's
    TuneReportCallback: that one hands them to the trial actor's main thread, which deadlocks when the last
    one arrives as this function returns (both put into Tune's one-slot result queue, and the main thread is
    its only reader). Seen as a search that never ended: every Train run done, two trial actors blocked in
    `Queue.put` for good."""
    from ray import tune

    from pipelines.data import Preprocessing
    from pipelines.trainer import build_trainer
    from pipelines.tune_reports import ReportQueue

    cfg = apply_sample(KilnConfig.model_validate(base), sample)
    # Named after the trial, so a restarted trial resumes its own Train run.
    name = f"train-{tune.get_context().get_trial_id()}"
    reports = ReportQueue()
    trainer = build_trainer(cfg, datasets=datasets, preprocessing=Preprocessing.from_dict(preprocessing),
                            name=name, use_gpu=use_gpu, callbacks=[reports], started_at=time.time(),
                            arrays=arrays)
    forward_reports(trainer.fit, reports.queue, tune.report)


def forward_reports(fit, queue, report, *, poll_s: float = 0.2) -> None:
    """Run `fit` in a thread and pass every item it puts on `queue` to `report`, in order, from this thread;
    return (or raise fit's error) once fit has returned and the queue is drained."""
    outcome: dict[str, BaseException] = {}
    done = threading.Event()

    def run() -> None:
        try:
            fit()
        except BaseException as err:  # raised again in the calling thread
            outcome["error"] = err
        finally:
            done.set()

    threading.Thread(target=run, daemon=True, name="kiln-train-run").start()
    while True:
        finished = done.is_set()  # read before the queue: whatever fit put is there by now
        try:
            report(queue.get(timeout=poll_s))
        except queue_module.Empty:  # ray.util.queue.Empty is one
            if finished:
                break
    if "error" in outcome:
        raise outcome["error"]


class OrphanReaper:
    """While a search runs on Kiln's own runtime, remove training placement groups whose Train run died before
    Train's cleaner knew of them (resources.orphaned_groups). Seen here in ~70 trials in one runtime: six
    such groups held 3 of 2 CPUs and the next trial waited for a worker group forever."""

    def __init__(self, interval_s: float = 15.0, grace_s: float = resources.ORPHAN_GRACE_S):
        self.interval_s, self.grace_s, self.removed = interval_s, grace_s, []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="kiln-orphan-reaper")

    def __enter__(self) -> OrphanReaper:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _run(self) -> None:
        seen: dict[str, float] = {}
        while not self._stop.wait(self.interval_s):
            try:
                self.sweep(seen)
            except Exception:  # the state API can time out on a busy machine; try again next time
                continue

    def sweep(self, seen: dict[str, float]) -> list[str]:
        import ray
        from ray.util.placement_group import PlacementGroup, placement_group_table, remove_placement_group
        from ray.util.state import list_actors

        groups = {pg_id: list(info["bundles"].values()) for pg_id, info in placement_group_table().items()
                  if info["state"] == "CREATED"}
        # This runtime's dashboard, by address: with other Ray runtimes on the machine the state API would
        # otherwise refuse to guess.
        dashboard = ray._private.worker.global_worker.node.address_info["webui_url"]
        actors = list_actors(address=f"http://{dashboard}", filters=[("state", "!=", "DEAD")], detail=True,
                             limit=10_000, raise_on_missing_output=False)
        occupied = {a.placement_group_id for a in actors if a.placement_group_id}
        orphans = resources.orphaned_groups(groups, occupied, seen, now=time.monotonic(), grace_s=self.grace_s)
        for pg_id in orphans:
            remove_placement_group(PlacementGroup(ray.PlacementGroupID.from_hex(pg_id)))
            seen.pop(pg_id, None)
        self.removed += orphans
        return orphans


class Interrupted(KeyboardInterrupt):
    """The search stopped before every trial ended; `kiln run --resume` continues it."""


def search(cfg: KilnConfig, splits, *, search_name: str, callbacks: list[Any] = (),
           resume: bool = False) -> SearchResult:
    """Run the search (or continue an interrupted one: finished trials are kept, interrupted
    trials restart and their Train runs resume from their last checkpoints)."""
    import ray
    from ray import tune

    cluster = ray.cluster_resources()
    cpus, gpus = cluster.get("CPU", 0.0), cluster.get("GPU", 0.0)
    concurrency = resources.max_concurrent_trials(cfg, cluster_cpus=cpus, cluster_gpus=gpus)
    use_gpu = resources.resolve_use_gpu(cfg, gpus)
    trainable = tune.with_resources(
        tune.with_parameters(run_trial, base=cfg.model_dump(), preprocessing=splits.preprocessing.to_dict(),
                             datasets={"train": splits.train, "val": splits.val}, arrays=splits.arrays,
                             use_gpu=use_gpu),
        {"cpu": resources.TRIAL_ACTOR_CPU})
    if resume:
        where = storage.ray_storage(cfg)
        tuner = tune.Tuner.restore(f"{where['storage_path']}/{search_name}", trainable, resume_unfinished=True,
                                   resume_errored=True, storage_filesystem=where["storage_filesystem"])
    else:
        tuner = build_tuner(cfg, trainable, search_name=search_name, concurrency=concurrency, callbacks=callbacks)
    with OrphanReaper() if cfg.ray.address is None else contextlib.nullcontext():  # never others' groups
        grid = tuner.fit()
    if grid.num_terminated + grid.num_errors < len(grid):
        raise Interrupted(f"search {search_name} interrupted")
    trials = [summarize(result, cfg) for result in grid]
    finished = [t for t in trials if t.best_checkpoint is not None]
    if not finished:
        errors = "; ".join(t.error for t in trials if t.error) or "no trial reported a checkpoint"
        raise RuntimeError(f"every trial failed: {errors[:500]}")
    best = with_existing_checkpoint(cfg, pick_best(finished, cfg.tune.mode))
    trials = [best if t.trial_id == best.trial_id else t for t in trials]
    epoch_times = [float(v) for r in grid if r.metrics_dataframe is not None and "epoch_time_s" in r.metrics_dataframe
                   for v in r.metrics_dataframe["epoch_time_s"].dropna()]
    return SearchResult(trials, best, concurrency, epoch_times)


def build_tuner(cfg: KilnConfig, trainable, *, search_name: str, concurrency: int, callbacks: list[Any]):
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler, FIFOScheduler
    from ray.tune.search.basic_variant import BasicVariantGenerator

    # Rungs count epochs, not reports: after a worker-group restart an epoch may be reported twice.
    scheduler = (ASHAScheduler(time_attr="epoch", max_t=cfg.train.epochs,
                               grace_period=min(cfg.tune.scheduler.grace_period, cfg.train.epochs),
                               reduction_factor=cfg.tune.scheduler.reduction_factor)
                 if cfg.tune.scheduler.name == "asha" else FIFOScheduler())
    param_space = {key: to_tune_domain(d) for key, d in parse_search_space(cfg.tune.search_space).items()}
    return tune.Tuner(
        trainable,
        param_space=param_space,
        tune_config=tune.TuneConfig(
            metric=cfg.tune.metric, mode=cfg.tune.mode, scheduler=scheduler,
            num_samples=cfg.tune.num_samples, max_concurrent_trials=concurrency,
            search_alg=BasicVariantGenerator(random_state=cfg.tune.seed, max_concurrent=concurrency)),
        run_config=tune.RunConfig(name=search_name, **storage.ray_storage(cfg), verbose=0, callbacks=list(callbacks)),
    )


def summarize(result, cfg: KilnConfig) -> TrialSummary:
    """One trial's outcome: its best checkpointed epoch (by tune.metric, ranked as Ray Train keeps
    checkpoints) and whether ASHA cut it short."""
    frame = result.metrics_dataframe
    trial_id = result.path.rstrip("/").rsplit("_", 2)[-2] if result.path else "?"
    sample = {k: v for k, v in (result.config or {}).items()}
    error = f"{type(result.error).__name__}: {result.error}".splitlines()[0] if result.error else None
    if frame is None or frame.empty or cfg.tune.metric not in frame:
        return TrialSummary(trial_id, sample, 0, None, None, False, error)
    epochs = frame["epoch"] if "epoch" in frame else frame["training_iteration"]
    paths = frame[CHECKPOINT_PATH_KEY] if CHECKPOINT_PATH_KEY in frame else [None] * len(frame)
    candidates = rank((Candidate(int(epoch), float(value), path if isinstance(path, str) else None)
                       for epoch, value, path in zip(epochs, frame[cfg.tune.metric], paths, strict=True)
                       if value == value and isinstance(path, str)), cfg.tune.mode)
    best = candidates[0] if candidates else None
    epochs_run = int(epochs.max())
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
    )


def with_existing_checkpoint(cfg: KilnConfig, trial: TrialSummary) -> TrialSummary:
    """The trial as it can be evaluated: its best checkpoint that still exists in storage (one line
    says so when that is not the best-ranked one); an error naming the path when none does."""
    choice = choose_existing(list(trial.candidates), lambda path: storage.checkpoint_exists(cfg, path))
    if choice.chosen is None:
        raise RuntimeError(f"trial {trial.trial_id}: no checkpoint left to evaluate; expected one at "
                           f"{storage.shown(trial.best_checkpoint or '?')}")
    if choice.note:
        console.say(f"  note: trial {trial.trial_id}: {choice.note}")
    return replace(trial, best_metric=choice.chosen.value, best_checkpoint=choice.chosen.checkpoint,
                   best_epoch=choice.chosen.epoch)


def pick_best(trials: list[TrialSummary], mode: str) -> TrialSummary:
    """Best metric wins; ties go to the trial that used fewer epochs, then to the first."""
    sign = -1.0 if mode == "max" else 1.0
    return min(trials, key=lambda t: (sign * t.best_metric if math.isfinite(t.best_metric) else math.inf,
                                      t.epochs_run))
