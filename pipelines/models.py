"""Model builders: architecture only. DDP, devices and precision are applied from outside."""

from __future__ import annotations

import importlib
import math

from torch import nn

from pipelines.config import ModelConfig


def build_model(cfg: ModelConfig, *, input_dim: int, num_classes: int) -> nn.Module:
    """`mlp`, `cnn`, or a user factory `package.module:function(input_dim, num_classes, cfg)`."""
    if cfg.name == "mlp":
        return mlp(input_dim, num_classes, cfg.hidden, cfg.dropout)
    if cfg.name == "cnn":
        return cnn(input_dim, num_classes, cfg.hidden, cfg.dropout)
    if ":" in cfg.name:
        module_name, _, attr = cfg.name.partition(":")
        try:
            factory = getattr(importlib.import_module(module_name), attr)
        except (ImportError, AttributeError) as err:
            raise ValueError(f"model.name: cannot import {cfg.name!r} ({err})") from None
        return factory(input_dim, num_classes, cfg)
    raise ValueError(f"model.name: unknown model {cfg.name!r}; use mlp, cnn or 'package.module:factory'")


def mlp(input_dim: int, num_classes: int, hidden: list[int], dropout: float) -> nn.Module:
    layers: list[nn.Module] = []
    width = input_dim
    for size in hidden:
        layers += [nn.Linear(width, size), nn.ReLU(), nn.Dropout(dropout)]
        width = size
    layers.append(nn.Linear(width, num_classes))
    return nn.Sequential(*layers)


class SquareImageCNN(nn.Module):
    """Rows of side*side pixels viewed as one-channel images (digits: 8x8)."""

    def __init__(self, input_dim: int, num_classes: int, channels: list[int], dropout: float):
        super().__init__()
        self.side = math.isqrt(input_dim)
        blocks: list[nn.Module] = []
        in_ch = 1
        for out_ch in channels:
            blocks += [nn.Conv2d(in_ch, out_ch, 3, padding=1), nn.ReLU()]
            in_ch = out_ch
        self.features = nn.Sequential(*blocks, nn.AdaptiveAvgPool2d(2), nn.Flatten(), nn.Dropout(dropout))
        self.head = nn.Linear(in_ch * 4, num_classes)

    def forward(self, x):
        return self.head(self.features(x.view(-1, 1, self.side, self.side)))


def cnn(input_dim: int, num_classes: int, channels: list[int], dropout: float) -> nn.Module:
    if math.isqrt(input_dim) ** 2 != input_dim:
        raise ValueError(f"model.name: cnn needs a square number of features (got {input_dim})")
    return SquareImageCNN(input_dim, num_classes, channels, dropout)
