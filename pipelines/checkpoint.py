"""The checkpoint format: weights, optimizer state, model config, preprocessing, label values."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from torch import nn

from pipelines.config import ModelConfig
from pipelines.encoding import Preprocessing
from pipelines.models import build_model

META_FILE = "kiln.json"
WEIGHTS_FILE = "model.pt"
OPTIMIZER_FILE = "optimizer.pt"


def save(folder: str | Path, *, model: nn.Module, optimizer: torch.optim.Optimizer | None,
         model_cfg: ModelConfig, preprocessing: Preprocessing, epoch: int, metrics: dict[str, float]) -> None:
    folder = Path(folder)
    torch.save(model.state_dict(), folder / WEIGHTS_FILE)
    if optimizer is not None:
        torch.save(optimizer.state_dict(), folder / OPTIMIZER_FILE)
    meta = {"model": model_cfg.model_dump(), "preprocessing": preprocessing.to_dict(),
            "epoch": epoch, "metrics": metrics}
    (folder / META_FILE).write_text(json.dumps(meta))


def read_meta(folder: str | Path) -> dict[str, Any]:
    return json.loads((Path(folder) / META_FILE).read_text())


def saved_model_config(saved: dict[str, Any]) -> ModelConfig:
    """A checkpoint's model section as a config; one saved before model.image_pool pooled globally."""
    return ModelConfig.model_validate({"image_pool": 1, **saved})


def load_model(folder: str | Path) -> tuple[nn.Module, Preprocessing, dict[str, Any]]:
    """Rebuild the model from a checkpoint folder, in eval mode on the CPU."""
    meta = read_meta(folder)
    prep = Preprocessing.from_dict(meta["preprocessing"])
    model = build_model(saved_model_config(meta["model"]),
                        input_dim=prep.width, num_classes=prep.output_dim, slots=prep.slots)
    state = torch.load(Path(folder) / WEIGHTS_FILE, map_location="cpu", weights_only=True)
    model.load_state_dict(state)
    return model.eval(), prep, meta
