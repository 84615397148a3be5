"""The training loop, on each Ray Train worker (or in a 1-worker trial's Tune actor): DDP epochs, validation, a
report and checkpoint per epoch. The Train run around it is built on the driver (training.launch)."""

from __future__ import annotations

import math
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from pipelines import task_metrics
from pipelines.config import ModelConfig, TrainConfig
from pipelines.data.preprocessing import Preprocessing
from pipelines.model import checkpoint, networks
from pipelines.model.networks import augment, build_model
from pipelines.training import batches, recipe


class TrainWorker:
    """The loop's view of a Ray Train worker: its rank, device, checkpoint, data shard and reports."""

    def __init__(self):
        import ray.train

        context = ray.train.get_context()
        self.rank, self.world_size = context.get_world_rank(), context.get_world_size()

    @property
    def device(self) -> torch.device:
        import ray.train.torch

        return ray.train.torch.get_device()

    def node_ids(self) -> str:
        return _node_ids(self.world_size)

    def prepare_model(self, model: torch.nn.Module) -> torch.nn.Module:
        import ray.train.torch

        return ray.train.torch.prepare_model(model)  # DDP over the ranks, on this worker's device

    def restored(self):
        import ray.train

        return ray.train.get_checkpoint()

    def shard(self, name: str):
        import ray.train

        return ray.train.get_dataset_shard(name)

    def report(self, metrics: dict[str, Any], folder: str | None = None) -> None:
        import ray.train

        ray.train.report(metrics, checkpoint=ray.train.Checkpoint.from_directory(folder) if folder else None)


class TrialActor:
    """The loop's view of Tune's trial actor, for a 1-worker trial trained there (train.runner: auto): rank 0 of 1,
    reports and checkpoints straight to Tune, Ray Data splits read whole."""

    rank, world_size = 0, 1

    def __init__(self, datasets: dict[str, Any] | None, use_gpu: bool):
        self.datasets = datasets or {}
        # Ray hands the actor its GPU as the only visible one.
        self.device = torch.device("cuda", 0) if use_gpu else torch.device("cpu")

    def node_ids(self) -> str:
        return _node_ids(1)

    def prepare_model(self, model: torch.nn.Module) -> torch.nn.Module:
        return model.to(self.device)

    def restored(self):
        from ray import tune

        return tune.get_checkpoint()

    def shard(self, name: str):
        return self.datasets[name].iterator()

    def report(self, metrics: dict[str, Any], folder: str | None = None) -> None:
        from ray import tune

        tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(folder) if folder else None)


def train_loop_per_worker(loop_config: dict[str, Any], worker: TrainWorker | TrialActor | None = None) -> None:
    """Runs on every worker (or in the trial actor). Each epoch every rank reports; rank 0 attaches the
    checkpoint."""
    worker = worker or TrainWorker()
    train_cfg: TrainConfig = loop_config["train"]
    model_cfg: ModelConfig = loop_config["model"]
    prep: Preprocessing = loop_config["preprocessing"]
    rank, world_size = worker.rank, worker.world_size

    torch.manual_seed(train_cfg.seed)
    model = build_model(model_cfg, input_dim=prep.width, num_classes=prep.output_dim, slots=prep.slots)
    networks.finetune(model, train_cfg.finetune)
    loss_fn = loss_function(train_cfg.loss, prep.task)
    train_loss_fn = loss_function(train_cfg.loss, prep.task, label_smoothing=train_cfg.label_smoothing)
    optimizer = recipe.optimizer(model, train_cfg)
    start_epoch, restored_metrics = _resume(model, optimizer, worker.restored())
    model = worker.prepare_model(model)
    device = worker.device
    amp = autocast_dtype(train_cfg.precision, device)
    scaler = grad_scaler(amp, device)

    node_ids = worker.node_ids()
    batch_size = max(1, train_cfg.batch_size // world_size)
    arrays = loop_config.get("arrays")  # None: the data streams through Ray Data shards
    cached = arrays is not None
    where = dict(
        arrays=arrays, device=device, rank=rank, world_size=world_size, row_bytes=prep.row_bytes, shard=worker.shard
    )
    train_data = batches.open_split("train", equal=True, **where)
    val_data = batches.open_split("val", equal=False, **where)  # with arrays, each rank evaluates its part
    train_rows = len(train_data) if cached else (loop_config.get("train_rows") or 0) // world_size
    schedule = recipe.Schedule(
        optimizer, train_cfg, steps_per_epoch=math.ceil(max(train_rows, 1) / batch_size), start_epoch=start_epoch
    )

    if restored_metrics:
        # The restored epoch again, without a checkpoint: a driver killed between that checkpoint and logging
        # its metrics would otherwise leave a hole in the trial's MLflow history (the tracker skips repeats).
        worker.report({**restored_metrics, "node_ids": node_ids})
    startup_s = time.time() - loop_config["started_at"]  # trial start to its first training step
    shifts = torch.Generator().manual_seed(train_cfg.seed * 1000 + rank)  # each rank its own augmentations
    has_images = train_cfg.augment and any(s.kind == "image" for s in prep.slots)
    augmented = (lambda x: augment(x, prep.slots, flip=train_cfg.flip, generator=shifts)) if has_images else None
    for epoch in range(start_epoch, train_cfg.epochs):
        started = time.perf_counter()
        loss_sum = train_epoch(
            model,
            optimizer,
            train_data,
            batch_size=batch_size,
            seed=train_cfg.seed + epoch,
            device=device,
            amp=amp,
            loss_fn=train_loss_fn,
            augment=augmented,
            scaler=scaler,
            schedule=schedule,
            grad_clip=train_cfg.grad_clip,
        )
        if world_size > 1:
            loss_sum = sum_over_ranks(loss_sum, device)
        if cached or world_size == 1:  # why: a streamed DDP shard's passes must stay in step across ranks
            recalibrate(model, train_data, batch_size=batch_size, seed=train_cfg.seed + epoch)
        outputs, targets = validate(model, val_data, batch_size=train_cfg.batch_size)
        if cached and world_size > 1:  # each rank evaluated its part of the val rows
            outputs, targets = gather_over_ranks(outputs), gather_over_ranks(targets)
        reported = {
            "train_loss": float(loss_sum[0] / max(loss_sum[1], 1.0)),
            **val_metrics(outputs, targets, prep, loss_fn),
            "epoch_time_s": time.perf_counter() - started,
            "epoch": epoch + 1,
            "node_ids": node_ids,
            **({"trial_startup_s": startup_s} if epoch == 0 else {}),
        }
        _report(worker, reported, model=model, optimizer=optimizer, model_cfg=model_cfg, prep=prep)


def grad_scaler(amp: torch.dtype | None, device: torch.device) -> torch.amp.GradScaler:
    """fp16 needs its loss scaled so small gradients survive; with bf16 or fp32 the scaler passes through. One per
    worker: the scale it learns carries over from epoch to epoch."""
    return torch.amp.GradScaler(device.type, enabled=amp == torch.float16)


def autocast_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    """train.precision on this device: the autocast type, or None for fp32."""
    cuda = device.type == "cuda"
    if precision == "auto":
        if not cuda:
            return None
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if precision == "fp16" and not cuda:
        raise ValueError("train.precision: fp16 needs a GPU; use bf16 or fp32 on the CPU")
    return {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}[precision]


def loss_function(loss: str, task: str, *, label_smoothing: float = 0.0):
    """train.loss (auto: the task's own) on the network's outputs and the targets; `label_smoothing` applies to
    cross-entropy (the training loss; evaluation takes the plain one)."""
    if loss == "auto":
        loss = "mse" if task == task_metrics.REGRESSION else "cross_entropy"
    if loss == "cross_entropy":
        if label_smoothing:
            return lambda outputs, y, **kw: F.cross_entropy(outputs, y, label_smoothing=label_smoothing, **kw)
        return F.cross_entropy
    base = F.mse_loss if loss == "mse" else F.huber_loss
    return lambda outputs, y, **kw: base(outputs.reshape(-1), y.to(outputs.dtype), **kw)


def val_metrics(outputs: torch.Tensor, targets: torch.Tensor, prep: Preprocessing, loss_fn) -> dict[str, float]:
    """val_loss (the training loss on the val rows) and the task's metrics, in the label's units."""
    if len(targets) == 0:
        return {
            "val_loss": float("nan"),
            **task_metrics.prefixed("val", task_metrics.compute(prep.task, np.zeros((0, 1)), np.zeros(0))),
        }
    loss = float(loss_fn(outputs, targets))
    if prep.regression:
        scores = task_metrics.regression(prep.decode(outputs.numpy()), prep.decode(targets.numpy()))
    else:
        scores = task_metrics.classification(torch.softmax(outputs.double(), dim=1).numpy(), targets.numpy())
    return {"val_loss": loss, **task_metrics.prefixed("val", scores)}


def train_epoch(
    model,
    optimizer,
    data,
    *,
    batch_size: int,
    seed: int,
    device: torch.device,
    amp: torch.dtype | None = None,
    loss_fn=F.cross_entropy,
    augment=None,
    scaler: torch.amp.GradScaler | None = None,
    schedule: recipe.Schedule | None = None,
    grad_clip: float = 0.0,
) -> torch.Tensor:
    """One shuffled pass over `data`: (sum of the batches' losses weighted by rows, rows) as float64 on the CPU.
    `amp` runs the forward under autocast to that type (fp16 with a gradient scaler); `augment(x)`, when given,
    changes each training batch; `schedule` sets the learning rate before each step; `grad_clip` > 0 clips the
    gradients' norm."""
    model.train()
    scaler = scaler or grad_scaler(amp, device)
    loss_total, rows = torch.zeros((), dtype=torch.float64, device=device), 0
    for x, y in data.batches(batch_size, seed=seed):
        if augment is not None:
            x = augment(x)
        with torch.autocast(device.type, dtype=amp or torch.bfloat16, enabled=amp is not None):
            loss = loss_fn(model(x), y)
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        if grad_clip > 0:
            scaler.unscale_(optimizer)
            torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
        if schedule is not None:
            schedule.before_step()
        scaler.step(optimizer)
        scaler.update()
        # .item() would sync with the device every step; accumulate on the device instead.
        loss_total += loss.detach().double() * len(y)
        rows += len(y)
    return torch.stack([loss_total.cpu(), torch.tensor(float(rows), dtype=torch.float64)])


def recalibrate(model, data, *, batch_size: int, seed: int) -> None:
    """Batch-norm statistics from this rank's unaugmented training rows, before validation and the checkpoint
    (recipe.recalibrate_batch_norm). The unwrapped module: a forward of DDP's own would sync buffers."""
    inner = model.module if hasattr(model, "module") else model
    if recipe.has_batch_norm(inner):
        recipe.recalibrate_batch_norm(inner, (x for x, _ in data.batches(batch_size, seed=seed)))


def sum_over_ranks(sums: torch.Tensor, device: torch.device) -> torch.Tensor:
    """All-reduce on the training device (NCCL takes no CPU tensors), back on the CPU."""
    on_device = sums.to(device)
    torch.distributed.all_reduce(on_device)
    return on_device.cpu()


def _node_ids(world_size: int) -> str:
    """The Ray nodes this trial's workers run on, recorded on its MLflow run."""
    import ray

    node_id = ray.get_runtime_context().get_node_id()
    if world_size == 1:
        return node_id
    gathered: list[str] = [""] * world_size
    torch.distributed.all_gather_object(gathered, node_id)
    return ",".join(sorted(set(gathered)))


def _resume(model: torch.nn.Module, optimizer: torch.optim.Optimizer, restored) -> tuple[int, dict[str, Any]]:
    """After a worker or driver failure, or a pbt exploit (another trial's checkpoint under this trial's new config),
    continue from the checkpoint: (its epoch, its metrics). The optimizer's moments come from the checkpoint; its
    weight decay and a backbone's share of the learning rate from this config (the learning rate is set from it
    before every step: recipe.Schedule)."""
    if not restored:
        return 0, {}
    settings = [(group["weight_decay"], group.get("lr_scale", 1.0)) for group in optimizer.param_groups]
    with restored.as_directory() as folder:
        model.load_state_dict(torch.load(Path(folder) / checkpoint.WEIGHTS_FILE, weights_only=True))
        optimizer.load_state_dict(torch.load(Path(folder) / checkpoint.OPTIMIZER_FILE, weights_only=True))
        for group, (weight_decay, lr_scale) in zip(optimizer.param_groups, settings, strict=True):
            group["weight_decay"], group["lr_scale"] = weight_decay, lr_scale
        meta = checkpoint.read_meta(folder)
        return int(meta["epoch"]), {**meta["metrics"], "epoch": int(meta["epoch"])}


def validate(model, data, *, batch_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The network's outputs and the targets over `data`, on the CPU (the metrics need every row: AUC ranks
    them). Runs the unwrapped module: ranks may hold different numbers of val rows, and DDP's forward may call
    collectives."""
    model = model.module if hasattr(model, "module") else model
    model.eval()
    outputs, targets = [], []
    with torch.inference_mode():
        for x, y in data.batches(batch_size):
            outputs.append(model(x).float().cpu())
            targets.append(y.cpu())
    if not outputs:
        return torch.zeros((0, 1)), torch.zeros(0)
    return torch.cat(outputs), torch.cat(targets)


def gather_over_ranks(part: torch.Tensor) -> torch.Tensor:
    """Every rank's rows, in rank order (ranks may hold different numbers of rows)."""
    gathered: list[torch.Tensor | None] = [None] * torch.distributed.get_world_size()
    torch.distributed.all_gather_object(gathered, part)
    return torch.cat([g for g in gathered if g is not None and len(g)] or [part])


def _report(worker, metrics, *, model, optimizer, model_cfg: ModelConfig, prep: Preprocessing) -> None:
    if worker.rank != 0:
        worker.report(metrics)
        return
    with tempfile.TemporaryDirectory() as folder:
        inner = model.module if hasattr(model, "module") else model
        checkpoint.save(
            folder,
            model=inner,
            optimizer=optimizer,
            model_cfg=model_cfg,
            preprocessing=prep,
            epoch=metrics["epoch"],
            metrics=metrics,
        )
        worker.report(metrics, folder)
