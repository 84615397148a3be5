"""Inference from a checkpoint: preprocess, forward, decode labels. No MLflow, no Ray."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from pipelines import checkpoint


class InferenceModel:
    """A trained model with its preprocessing; takes raw feature rows, returns label values."""

    def __init__(self, folder: str | Path):
        self.model, self.preprocessing, self.meta = checkpoint.load_model(folder)

    @property
    def features(self) -> list[str]:
        return self.preprocessing.features

    def predict_proba(self, rows: np.ndarray) -> np.ndarray:
        x = torch.from_numpy(self.preprocessing.transform(np.asarray(rows, dtype=np.float64)))
        with torch.inference_mode():
            return torch.softmax(self.model(x), dim=1).numpy()

    def predict(self, rows: np.ndarray) -> list[Any]:
        labels = self.preprocessing.labels
        return [labels[i] for i in self.predict_proba(rows).argmax(axis=1)]

    def frame_to_rows(self, frame: pd.DataFrame) -> np.ndarray:
        """Columns by name when they are the features, else by position in training order."""
        if set(self.features) <= set(map(str, frame.columns)):
            return frame[self.features].to_numpy(dtype=np.float64)
        if frame.shape[1] != len(self.features):
            raise ValueError(f"expected {len(self.features)} feature columns, got {frame.shape[1]}")
        return frame.to_numpy(dtype=np.float64)
