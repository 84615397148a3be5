"""Inference from a checkpoint: preprocess, forward, decode labels. No MLflow, no Ray."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from pipelines.model import checkpoint

BASELINE_FOLDER = "baseline"  # a version's kept baseline (baseline_files), when the baseline or a blend won


def candidate_of(meta: dict) -> tuple[str, float | None]:
    """(registry.candidates' winner, the blend's weight on the network) from a checkpoint's kiln.json, checked:
    a version without the key is the network, as every version before candidates."""
    chosen = meta.get("candidate") or {"name": "network"}
    name = chosen.get("name") if isinstance(chosen, dict) else None
    if name not in ("network", "baseline", "blend"):
        raise ValueError(f"kiln.json: unknown candidate {name!r}")
    weight = chosen.get("weight")
    if name == "blend" and not (isinstance(weight, int | float) and 0.0 <= weight <= 1.0):
        raise ValueError(f"kiln.json: the blend's weight {weight!r} is not a number in [0, 1]")
    return name, float(weight) if name == "blend" else None


class InferenceModel:
    """A trained model with its preprocessing; takes raw feature rows, returns label values (classification)
    or numbers in the label's units (regression)."""

    def __init__(self, folder: str | Path, *, factory: str | None = None):
        """`factory`: the user factory the checkpoint may name (checkpoint.trusted_factory); None: Kiln's only."""
        self.model, self.preprocessing, self.meta = checkpoint.load_model(folder, factory=factory)
        self.device = torch.device("cpu")
        # registry.candidates: the version may be the baseline or a blend (kept without a pickle, signed with
        # the rest of the version); a version without the key is the network, as every earlier one
        self.candidate, self.blend_weight = candidate_of(self.meta)
        self.baseline = None
        if self.candidate != "network":
            from pipelines.model import baseline_files

            self.baseline = baseline_files.load(Path(folder) / BASELINE_FOLDER)

    def to(self, device: str | torch.device) -> InferenceModel:
        """Run forward passes on `device` (a replica with serve.num_gpus: cuda), a frozen pretrained text encoder's
        too (the expensive part of such a request); the rest of a row is encoded on the CPU."""
        self.device = torch.device(device)
        self.model = self.model.to(self.device)
        for encoder in self.preprocessing.encoders:
            if encoder.frozen and encoder.backbone is not None:
                encoder.backbone.model.to(self.device)
        return self

    @property
    def features(self) -> list[str]:
        return self.preprocessing.features

    @property
    def task(self) -> str:
        return self.preprocessing.task

    def outputs(self, rows: pd.DataFrame | np.ndarray) -> np.ndarray:
        """Class probabilities [N, K] (classification) or values [N] in the label's units (regression) of raw
        rows: a frame of the feature columns, or a matrix in feature order. The registered candidate's: the
        network's, the baseline's, or their blend."""
        if self.candidate == "baseline":
            return self.baseline.outputs(self.as_frame(rows))
        network = self.network_outputs(rows)
        if self.candidate == "blend":
            from pipelines.model import blend

            return blend.blended(network, self.baseline.outputs(self.as_frame(rows)), self.blend_weight)
        return network

    def network_outputs(self, rows: pd.DataFrame | np.ndarray) -> np.ndarray:
        x = {
            key: torch.from_numpy(values).to(self.device) for key, values in self.preprocessing.transform(rows).items()
        }
        with torch.inference_mode():
            out = self.model(x).float().cpu()
        if self.preprocessing.regression:
            return self.preprocessing.decode(out.numpy())
        return torch.softmax(out, dim=1).numpy()

    def as_frame(self, rows: pd.DataFrame | np.ndarray) -> pd.DataFrame:
        """Rows as a frame of the feature columns (a matrix is in feature order)."""
        if isinstance(rows, pd.DataFrame):
            return self.feature_frame(rows)
        return pd.DataFrame(np.asarray(rows, dtype=object).reshape(len(rows), -1), columns=self.features)

    def predict_proba(self, rows: pd.DataFrame | np.ndarray) -> np.ndarray:
        self.check_probabilities("probabilities")
        return self.outputs(rows)

    def check_probabilities(self, asked_by: str) -> None:
        """Class probabilities exist for a classifier only; `asked_by` names the parameter in the message."""
        if self.preprocessing.regression:
            raise ValueError(f"{asked_by}: this model is a regression; it answers numbers")

    def predict(self, rows: pd.DataFrame | np.ndarray) -> list[Any]:
        return self.decode(self.outputs(rows))

    def decode(self, outputs: np.ndarray) -> list[Any]:
        """What `outputs` gave, as answers: label values, or floats."""
        if self.preprocessing.regression:
            return [float(v) for v in outputs]
        labels = self.preprocessing.labels
        return [labels[i] for i in outputs.argmax(axis=1)]

    def probabilities(self, outputs: np.ndarray) -> list[dict[str, float]]:
        """Each row's class probabilities keyed by label (as JSON keys: strings)."""
        self.check_probabilities("probabilities")
        labels = [str(v) for v in self.preprocessing.labels]
        return [dict(zip(labels, map(float, row), strict=True)) for row in outputs]

    def feature_frame(self, frame: pd.DataFrame) -> pd.DataFrame:
        """The feature columns: by name when the frame has them all (extra columns, e.g. the label, are left
        out), else by position in training order."""
        columns = [str(c) for c in frame.columns]
        if columns == self.features:  # a request's frame, as the predictor builds it: no copy
            return frame
        if set(self.features) <= set(columns):
            return frame.set_axis(columns, axis=1)[self.features]
        if frame.shape[1] != len(self.features):
            raise ValueError(f"expected {len(self.features)} feature columns, got {frame.shape[1]}")
        return frame.set_axis(self.features, axis=1)
