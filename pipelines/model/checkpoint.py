"""The checkpoint format: weights, optimizer state, model config, preprocessing, label values."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from torch import nn

from pipelines.cluster import storage
from pipelines.config import KilnConfig, ModelConfig
from pipelines.data.preprocessing import Preprocessing
from pipelines.errors import ConfigError
from pipelines.model.networks import BUILDERS, build_model

META_FILE = "kiln.json"
WEIGHTS_FILE = "model.pt"
OPTIMIZER_FILE = "optimizer.pt"
FACTORY_FILE = "factory.py"  # a registered version's copy of its user factory's module (signed with the rest)


def save(
    folder: str | Path,
    *,
    model: nn.Module,
    optimizer: torch.optim.Optimizer | None,
    model_cfg: ModelConfig,
    preprocessing: Preprocessing,
    epoch: int,
    metrics: dict[str, float],
) -> None:
    folder = Path(folder)
    torch.save(model.state_dict(), folder / WEIGHTS_FILE)
    if optimizer is not None:
        torch.save(optimizer.state_dict(), folder / OPTIMIZER_FILE)
    meta = {
        "model": model_cfg.model_dump(),
        "preprocessing": preprocessing.to_dict(),
        "epoch": epoch,
        "metrics": metrics,
    }
    (folder / META_FILE).write_text(json.dumps(meta))


def read_meta(folder: str | Path) -> dict[str, Any]:
    return json.loads((Path(folder) / META_FILE).read_text())


def saved_model_config(saved: dict[str, Any]) -> ModelConfig:
    """A checkpoint's model section as a config; one saved before model.image_pool pooled globally, and before
    model.text_wide had no wide path."""
    return ModelConfig.model_validate({"image_pool": 1, "text_wide": False, **saved})


class UntrustedModel(ValueError):
    """A checkpoint names code outside Kiln that the config loading it does not trust."""


def trusted_factory(cfg: ModelConfig, *, own_run: bool = False) -> str | None:
    """The one user factory a checkpoint may name and be built from: the config's own model.name, for this run's
    own trials (`own_run`) or with model.trust_code for a registered version; None: Kiln's builders only."""
    return cfg.name if ":" in cfg.name and (own_run or cfg.trust_code) else None


def factory_source(name: str) -> Path:
    """The source file of a user factory's module (`package.module:function`), to travel inside a version."""
    import importlib.util

    module = name.partition(":")[0]
    try:
        spec = importlib.util.find_spec(module)
    except (ImportError, ValueError):
        spec = None
    origin = Path(spec.origin) if spec and spec.origin else None
    if origin is None or origin.suffix != ".py" or not origin.is_file():
        raise ConfigError(f"model.name: {name!r}: its module is not a Python source file a version can carry")
    return origin


def load_model(folder: str | Path, *, factory: str | None = None) -> tuple[nn.Module, Preprocessing, dict[str, Any]]:
    """Rebuild the model from a checkpoint folder, in eval mode on the CPU. kiln.json's model.name decides what
    is built, and the folder may come from a shared store: a name outside Kiln's builders is imported only when
    it is `factory` (trusted_factory), and a failure inside it, SystemExit included, is an error, not an exit.
    A registered version runs the factory module it carries (FACTORY_FILE), the code that was signed with it."""
    meta = read_meta(folder)
    prep = Preprocessing.from_dict(meta["preprocessing"]).rooted(folder)
    saved = saved_model_config(meta["model"])
    if saved.name not in BUILDERS and saved.name != factory:
        raise UntrustedModel(
            f"{folder}: its model.name {saved.name!r} is code outside Kiln; it is built only where "
            f"the loading config says model.name: {saved.name!r} and model.trust_code: true"
        )
    carried = Path(folder) / FACTORY_FILE
    code = str(carried) if saved.name not in BUILDERS and carried.is_file() else None
    try:
        model = build_model(
            saved, input_dim=prep.width, num_classes=prep.output_dim, slots=prep.slots, factory_file=code
        )
    except (Exception, SystemExit) as err:
        raise ValueError(f"{folder}: building {saved.name!r} failed: {type(err).__name__}: {err}") from None
    state = torch.load(Path(folder) / WEIGHTS_FILE, map_location="cpu", weights_only=True)
    missing, unexpected = model.load_state_dict(state, strict=False)
    # A version's fine-tuned backbones: their weights are its copies' safetensors, which the model was built from.
    carried = tuple(backbone_prefixes(Preprocessing.from_dict(meta["preprocessing"]), carried_only=True).values())
    missing = [k for k in missing if not k.startswith(carried)] if carried else missing
    if missing or unexpected:
        raise ValueError(
            f"{folder}: its weights do not fit its model: missing {missing[:3]}, unexpected {unexpected[:3]}"
        )
    return model.eval(), prep, meta


def backbone_prefixes(prep: Preprocessing, *, carried_only: bool = False) -> dict[str, str]:
    """Each fine-tuned pretrained text column's weights' prefix in the concat combiner's state dict (its slot's
    encoder); `carried_only`: those whose folder a version names within itself (registry.carry_backbones), which
    holds the trained weights."""
    return {
        slot.column: f"encoders.{i}.model."
        for i, slot in enumerate(prep.slots)
        if slot.pretrained and not (carried_only and Path(slot.pretrained).is_absolute())
    }


def exists(cfg: KilnConfig, path: str) -> bool:
    """A complete checkpoint is at `path` (in storage's filesystem): its metadata file, written last, is there."""
    import pyarrow.fs

    fs = storage.filesystem(cfg)[0]
    try:
        return fs.get_file_info(f"{path.rstrip('/')}/{META_FILE}").type == pyarrow.fs.FileType.File
    except OSError:
        return False
