"""Kiln's preprocessing, model and training loop in this process, without Ray: one config trained on a table's
train split and scored on its val and test splits. For tests and benchmarks that check what the network learns
(the image-size regression test, benchmarks/quality.py) without paying for a runtime per case."""

from __future__ import annotations

import tempfile
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import torch

from pipelines import task_metrics
from pipelines.config import KilnConfig
from pipelines.data import preprocessing, pretrained, sources
from pipelines.model import checkpoint
from pipelines.training import batches
from pipelines.training.loop import train_loop_per_worker


class LocalWorker:
    """Rank 0 of 1 on the CPU: keeps every epoch's metrics and the best epoch's checkpoint (by tune.metric)."""

    rank, world_size = 0, 1
    device = torch.device("cpu")

    def __init__(self, metric: str, mode: str, folder: str):
        self.metric, self.mode, self.folder = metric, mode, folder
        self.history: list[dict[str, Any]] = []
        self.best: dict[str, Any] | None = None

    def node_ids(self) -> str:
        return "local"

    def prepare_model(self, model: torch.nn.Module) -> torch.nn.Module:
        return model

    def restored(self):
        return None

    def shard(self, name: str):
        raise AssertionError("training.local always hands the loop arrays")

    def report(self, reported: dict[str, Any], folder: str | None = None) -> None:
        self.history.append(reported)
        value = reported[self.metric]
        better = self.best is None or (
            value > self.best[self.metric] if self.mode == "max" else value < self.best[self.metric]
        )
        if folder and better:
            import shutil

            shutil.copytree(folder, self.folder, dirs_exist_ok=True)
            self.best = reported


@dataclass(frozen=True)
class Fitted:
    val: dict[str, float]  # the best epoch's val metrics
    test: dict[str, float]  # test_<metric> of that epoch's weights on the test split, through the fitted prep
    epochs: list[dict[str, Any]]
    seconds: float


def fit(cfg: KilnConfig, frame: pd.DataFrame) -> Fitted:
    """Train `cfg` (no search: its own values) on `frame`'s train split in this process; score the best epoch."""
    started = time.perf_counter()
    checked = sources.check_frame(frame, cfg.data)
    cfg = cfg.for_task(checked.task)
    rows, label = checked.frame, cfg.data.label
    train_idx, val_idx, test_idx = sources.split(rows[label].to_numpy(), cfg.data.split, checked.task)
    prep = preprocessing.fit(
        rows.iloc[train_idx],
        checked.types,
        rows[label],
        **preprocessing.sizes(cfg.data),
        backbones=pretrained.columns(cfg.model, checked.types, cfg.train.finetune),
        task=checked.task,
        train_labels=rows[label].iloc[train_idx],
    )

    def arrays(idx: np.ndarray) -> tuple[dict[str, np.ndarray], np.ndarray]:
        part = rows.iloc[idx]
        return prep.transform(part[checked.features], allow_paths=True), prep.encode(part[label])

    with tempfile.TemporaryDirectory() as folder:
        worker = LocalWorker(cfg.tune.metric, cfg.tune.mode, folder)
        train_loop_per_worker(
            {
                "train": cfg.train,
                "model": cfg.model,
                "preprocessing": prep,
                "arrays": {"train": arrays(train_idx), "val": arrays(val_idx)},
                "started_at": time.time(),
            },
            worker,
        )
        model, prep, _ = checkpoint.load_model(folder, factory=checkpoint.trusted_factory(cfg.model, own_run=True))
        x_test, y_test = arrays(test_idx)
        with torch.inference_mode():
            outputs = model(batches.tensors(x_test)).double().numpy()
    if prep.regression:
        scores = task_metrics.regression(prep.decode(outputs), prep.decode(y_test))
    else:
        scores = task_metrics.classification(torch.softmax(torch.as_tensor(outputs), 1).numpy(), y_test)
    best = {k: v for k, v in worker.best.items() if k.startswith("val_")}
    return Fitted(best, task_metrics.prefixed("test", scores), worker.history, time.perf_counter() - started)
