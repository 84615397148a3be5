"""One trial: the Tune trainable that trains the sampled config, in its own actor (1 worker) or as a Ray Train run
whose reports it forwards."""

from __future__ import annotations

import queue as queue_module
import threading
import time
from typing import Any

import ray.train
from ray.util.queue import Queue

from pipelines.config import KilnConfig
from pipelines.data.preprocessing import Preprocessing
from pipelines.search import resources
from pipelines.search.ranking import CHECKPOINT_PATH_KEY


def run_trial(
    sample: dict[str, Any],
    *,
    base: KilnConfig,
    preprocessing: Preprocessing,
    datasets: dict[str, Any],
    arrays: dict[str, Any] | None,
    use_gpu: bool,
    train_rows: int | None = None,
) -> None:
    """The Tune trainable: run the trial's config to the end or until ASHA stops it. A 1-worker trial trains
    right here (resources.in_trial_actor); otherwise as a Train run, whose reports reach Tune from this thread
    (`forward_reports`)."""
    from ray import tune

    from pipelines.training.launch import build_trainer, loop_config

    started_at = time.time()
    cfg = base.with_sample(sample)
    if resources.in_trial_actor(base):
        from pipelines.training import loop

        config = loop_config(
            cfg, preprocessing=preprocessing, arrays=arrays, started_at=started_at, train_rows=train_rows
        )
        loop.train_loop_per_worker(config, loop.TrialActor(datasets, use_gpu))
        return
    # Named after the trial, so a restarted trial resumes its own Train run.
    name = f"train-{tune.get_context().get_trial_id()}"
    reports = ReportQueue()
    trainer = build_trainer(
        cfg,
        datasets=datasets,
        preprocessing=preprocessing,
        name=name,
        use_gpu=use_gpu,
        callbacks=[reports],
        started_at=started_at,
        arrays=arrays,
        train_rows=train_rows,
    )
    # why: Ray's TuneReportCallback hands reports to the trial actor's main thread, which deadlocked when the
    # last one arrived as this function returned (both put into Tune's one-slot result queue).
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


class ReportQueue(ray.train.UserCallback):
    """Runs in the Train controller: puts each report's metrics (rank 0's, as Ray's TuneReportCallback
    does), plus the persisted checkpoint's path, on a queue actor owned by the trial."""

    def __init__(self):
        self.queue = Queue(actor_options={"num_cpus": 0})

    def after_report(self, run_context, metrics: list[dict[str, Any]], checkpoint) -> None:
        item = dict(metrics[0])
        if checkpoint:
            item[CHECKPOINT_PATH_KEY] = checkpoint.path
        self.queue.put(item)
