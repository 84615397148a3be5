"""Score a checkpoint on the held-out test split, exactly as the registered model will predict."""

from __future__ import annotations

import numpy as np

from pipelines.data import _plain
from pipelines.inference import InferenceModel


def test_accuracy(checkpoint_dir: str, test_x: np.ndarray, test_y: np.ndarray) -> float:
    predictions = InferenceModel(checkpoint_dir).predict(test_x)
    truth = [_plain(v) for v in test_y]
    return float(np.mean([p == t for p, t in zip(predictions, truth, strict=True)]))
