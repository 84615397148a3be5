"""Score a checkpoint on the held-out test split, exactly as the registered model will predict."""

from __future__ import annotations

import numpy as np

from pipelines.data import _plain
from pipelines.inference import InferenceModel
from pipelines.registry import accuracy


def test_accuracy(checkpoint_dir: str, test_x: np.ndarray, test_y: np.ndarray) -> float:
    return accuracy(InferenceModel(checkpoint_dir).predict(test_x), [_plain(v) for v in test_y])
