"""The training recipe: AdamW with decoupled weight decay on weight matrices only, a learning rate that warms up
linearly and then follows a cosine to zero, stepped per batch, and batch-norm statistics re-estimated before
evaluation. Pure torch: no Ray.

The learning rate is a function of the step alone (`lr_at`), and the step of the epoch a trial starts from:
a resumed, promoted or restarted trial continues its schedule where it stopped instead of warming up again.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch
from torch import nn

from pipelines.config import TrainConfig
from pipelines.model import networks


def optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.AdamW:
    """AdamW (Loshchilov & Hutter, 2019) with train.weight_decay on weight matrices, convolutions and embeddings;
    biases and normalisation scales get none (decaying them only shrinks what the norm restores: nanoGPT and
    timm leave them out too)."""
    groups = parameter_groups(model, cfg)
    return torch.optim.AdamW([{**g, "params": p} for g, p in groups if p], lr=cfg.lr)


def parameter_groups(model: nn.Module, cfg: TrainConfig) -> list[tuple[dict, list[nn.Parameter]]]:
    """The optimizer's groups, each with its settings: decayed and not, and a pretrained backbone's apart at
    train.backbone_lr (its `lr_scale` of train.lr, which the schedule multiplies). The optimizer keeps the
    non-empty ones in this order (a model without a backbone: the two groups it always had)."""
    backbone = networks.backbone_parameters(model)
    scale = cfg.backbone_lr / cfg.lr
    groups = [
        ({"weight_decay": cfg.weight_decay, "lr_scale": 1.0}, []),
        ({"weight_decay": 0.0, "lr_scale": 1.0}, []),
        ({"weight_decay": cfg.weight_decay, "lr_scale": scale}, []),
        ({"weight_decay": 0.0, "lr_scale": scale}, []),
    ]
    for parameter in model.parameters():
        if parameter.requires_grad:
            groups[2 * (id(parameter) in backbone) + (parameter.ndim < 2)][1].append(parameter)
    return groups


def total_steps(cfg: TrainConfig, steps_per_epoch: int) -> int:
    return max(1, cfg.epochs * steps_per_epoch)


def lr_at(step: int, *, base_lr: float, total: int, warmup_fraction: float, schedule: str) -> float:
    """The learning rate of optimizer step `step` (0-based) of `total`: a linear warm-up over the first
    warmup_fraction of the steps, then constant or a cosine decay to zero at the last step."""
    warmup = int(round(warmup_fraction * total))
    if step < warmup:
        return base_lr * (step + 1) / warmup
    if schedule == "constant":
        return base_lr
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return base_lr * 0.5 * (1.0 + math.cos(math.pi * progress))


class Schedule:
    """Sets each parameter group's learning rate before every optimizer step."""

    def __init__(
        self, optimizer: torch.optim.Optimizer, cfg: TrainConfig, *, steps_per_epoch: int, start_epoch: int = 0
    ):
        self.optimizer, self.cfg = optimizer, cfg
        self.total = total_steps(cfg, steps_per_epoch)
        self.step_count = start_epoch * steps_per_epoch

    @property
    def lr(self) -> float:
        return lr_at(
            self.step_count,
            base_lr=self.cfg.lr,
            total=self.total,
            warmup_fraction=self.cfg.warmup_fraction,
            schedule=self.cfg.schedule,
        )

    def before_step(self) -> None:
        lr = self.lr
        for group in self.optimizer.param_groups:
            group["lr"] = lr * group.get("lr_scale", 1.0)
        self.step_count += 1


def has_batch_norm(model: nn.Module) -> bool:
    return any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())


def recalibrate_batch_norm(model: nn.Module, batches: Iterable[torch.Tensor], *, max_batches: int = 50) -> None:
    """Batch-norm running statistics re-estimated as a plain average over up to `max_batches` training batches
    with the weights as they are now (precise BN, Wu & Johnson 2021). The running averages that training keeps
    lag the weights: with ~20 steps an epoch at momentum 0.1 they mostly describe earlier weights, and eval mode
    then scores far below what the network has learned."""
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not norms:
        return
    momenta = [m.momentum for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # a cumulative average over the batches below
    was_training = model.training
    model.train()
    with torch.no_grad():
        for i, x in enumerate(batches):
            if i >= max_batches:
                break
            model(x)
    for m, momentum in zip(norms, momenta, strict=True):
        m.momentum = momentum
    model.train(was_training)
