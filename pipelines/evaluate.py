"""Score a checkpoint on the held-out test split, exactly as the registered model will predict."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from pipelines.encoding import plain
from pipelines.inference import InferenceModel


@dataclass(frozen=True)
class TestReport:
    accuracy: float
    labels: list[Any]
    confusion: list[list[int]]  # rows: true label, columns: predicted label, in `labels` order

    def to_dict(self) -> dict[str, Any]:
        return {"accuracy": self.accuracy, "labels": self.labels, "confusion": self.confusion}


def accuracy(predictions: list[Any], labels: list[Any]) -> float:
    return float(sum(p == t for p, t in zip(predictions, labels, strict=True)) / max(len(labels), 1))


def confusion_matrix(truth: list[Any], predictions: list[Any], labels: list[Any]) -> list[list[int]]:
    index = {label: i for i, label in enumerate(labels)}
    matrix = np.zeros((len(labels), len(labels)), dtype=int)
    for t, p in zip(truth, predictions, strict=True):
        matrix[index[t], index[p]] += 1
    return matrix.tolist()


def test_report(checkpoint_dir: str, test_frame: pd.DataFrame, test_y: np.ndarray) -> TestReport:
    model = InferenceModel(checkpoint_dir)
    predictions = model.predict(test_frame)
    truth = [plain(v) for v in test_y]
    labels = model.preprocessing.labels
    return TestReport(accuracy(predictions, truth), labels, confusion_matrix(truth, predictions, labels))

