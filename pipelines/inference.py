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

    def predict_proba(self, rows: pd.DataFrame | np.ndarray) -> np.ndarray:
        """Class probabilities of raw rows: a frame of the feature columns, or a matrix in feature order."""
        x = torch.from_numpy(self.preprocessing.transform(rows))
        with torch.inference_mode():
            return torch.softmax(self.model(x), dim=1).numpy()

    def predict(self, rows: pd.DataFrame | np.ndarray) -> list[Any]:
        labels = self.preprocessing.labels
        return [labels[i] for i in self.predict_proba(rows).argmax(axis=1)]

    def feature_frame(self, frame: pd.DataFrame) -> pd.DataFrame:
        """The feature columns: by name when the frame has them all (extra columns, e.g. the label, are left
        out), else by position in training order."""
        columns = [str(c) for c in frame.columns]
        if set(self.features) <= set(columns):
            return frame.set_axis(columns, axis=1)[self.features]
        if frame.shape[1] != len(self.features):
            raise ValueError(f"expected {len(self.features)} feature columns, got {frame.shape[1]}")
        return frame.set_axis(self.features, axis=1)
