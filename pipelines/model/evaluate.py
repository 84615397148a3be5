"""Score a checkpoint on the held-out test split, exactly as the registered model will predict."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from pipelines import task_metrics
from pipelines.data.preprocessing import plain
from pipelines.model.inference import InferenceModel

MAX_CURVES = 10  # ROC curves drawn one per class (one-vs-rest) up to this many classes
MAX_POINTS = 2000  # regression: (actual, predicted) pairs kept for the report's plots


@dataclass(frozen=True)
class TestReport:
    task: str
    metrics: dict[str, float]  # test_<name> for every metric of the task
    labels: list[Any] = field(default_factory=list)
    confusion: list[list[int]] | None = None  # rows: true label, columns: predicted label, in `labels` order
    roc: dict[str, tuple[list[float], list[float]]] | None = None  # label -> (fpr, tpr)
    points: tuple[list[float], list[float]] | None = None  # regression: (actual, predicted), at most MAX_POINTS

    @property
    def primary(self) -> str:
        """The task's primary test metric: what the registry's gate compares."""
        return primary_metric(self.task)

    @property
    def value(self) -> float:
        return self.metrics[self.primary]

    @property
    def accuracy(self) -> float | None:
        return self.metrics.get("test_accuracy")

    def to_dict(self) -> dict[str, Any]:
        return {
            "task": self.task,
            "metrics": self.metrics,
            "accuracy": self.accuracy,
            "labels": self.labels,
            "confusion": self.confusion,
            "roc": self.roc,
            "points": self.points,
        }


def primary_metric(task: str) -> str:
    return f"test_{task_metrics.PRIMARY[task]}"


def accuracy(predictions: list[Any], labels: list[Any]) -> float:
    return float(sum(p == t for p, t in zip(predictions, labels, strict=True)) / max(len(labels), 1))


def score(task: str, predictions: list[Any], truth: list[Any]) -> float:
    """The task's primary metric of plain predictions (what any model answers, probabilities or not)."""
    if task == task_metrics.REGRESSION:
        return task_metrics.regression(np.asarray(predictions, dtype=np.float64), np.asarray(truth, dtype=np.float64))[
            task_metrics.PRIMARY[task]
        ]
    return accuracy(predictions, truth)


def confusion_matrix(truth: list[Any], predictions: list[Any], labels: list[Any]) -> list[list[int]]:
    index = {label: i for i, label in enumerate(labels)}
    matrix = np.zeros((len(labels), len(labels)), dtype=int)
    for t, p in zip(truth, predictions, strict=True):
        matrix[index[t], index[p]] += 1
    return matrix.tolist()


def test_report(
    checkpoint_dir: str, test_frame: pd.DataFrame, test_y: np.ndarray, *, factory: str | None = None
) -> TestReport:
    """`factory`: the user factory this run trains, if any (checkpoint.trusted_factory)."""
    model = InferenceModel(checkpoint_dir, factory=factory)
    outputs = model.outputs(test_frame)
    prep = model.preprocessing
    if prep.regression:
        truth = np.asarray(test_y, dtype=np.float64)
        step = max(1, len(truth) // MAX_POINTS)
        return TestReport(
            task_metrics.REGRESSION,
            task_metrics.prefixed("test", task_metrics.regression(outputs, truth)),
            points=(truth[::step].tolist(), outputs[::step].tolist()),
        )
    truth_values = [plain(v) for v in test_y]
    index = prep.encode(pd.Series(truth_values, dtype=object))
    predictions = model.decode(outputs)
    labels = prep.labels
    positive = range(1, 2) if len(labels) == 2 else range(len(labels)) if len(labels) <= MAX_CURVES else range(0)
    roc = {
        str(labels[c]): task_metrics.roc_curve(outputs[:, c], index == c)
        for c in positive
        if 0 < (index == c).sum() < len(index)
    }
    return TestReport(
        task_metrics.CLASSIFICATION,
        task_metrics.prefixed("test", task_metrics.classification(outputs, index)),
        labels,
        confusion_matrix(truth_values, predictions, labels),
        roc or None,
    )
