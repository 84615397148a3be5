"""How a trial's Train run hands its reports to Tune: a queue the trial's own thread reads (tune.forward_reports)."""

from __future__ import annotations

from typing import Any

import ray.train
from ray.util.queue import Queue

from pipelines.tune import CHECKPOINT_PATH_KEY


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
