"""The planner's cost model (Paleo-style): a DDP step and epoch per worker count, and the search's ASHA arithmetic."""

from __future__ import annotations

import dataclasses
import math

from pipelines.config import KilnConfig
from pipelines.plan.flops import count_flops
from pipelines.plan.hardware import HardwareProfile
from pipelines.search import resources, scheduler


def ring_allreduce_s(grad_bytes: float, num_workers: int, bandwidth: float, latency: float) -> float:
    """Ring all-reduce: each worker sends and receives 2(N-1)/N of the buffer."""
    if num_workers == 1:
        return 0.0
    return 2 * (num_workers - 1) / num_workers * grad_bytes / bandwidth + latency


@dataclasses.dataclass(frozen=True)
class WorkerPrediction:
    num_workers: int
    batch_size_per_worker: int
    compute_s: float
    allreduce_s: float
    data_s: float
    overhead_s: float
    step_time_s: float
    steps_per_epoch: int
    epoch_time_s: float
    samples_per_s: float
    efficiency: float


def predict(
    cfg: KilnConfig, profile: HardwareProfile, flops: dict, *, num_workers: int, train_rows: int
) -> WorkerPrediction:
    """One epoch of DDP on num_workers workers; a step is compute + all-reduce + data + overhead."""
    own = _predict(cfg, profile, flops, num_workers, train_rows)
    alone = own if num_workers == 1 else _predict(cfg, profile, flops, 1, train_rows)
    efficiency = own.samples_per_s / (num_workers * alone.samples_per_s)
    return dataclasses.replace(own, efficiency=efficiency)


def _predict(cfg, profile, flops, num_workers, train_rows) -> WorkerPrediction:
    per_worker = max(1, cfg.train.batch_size // num_workers)  # as train.py splits the batch
    # Workers beyond the cores time-share them, so every CPU-side cost stretches by N / cores.
    share = max(1.0, num_workers / profile.cores) if profile.cores else 1.0
    compute = share * flops["flops_per_sample"] * per_worker / profile.flops_per_s
    allreduce = ring_allreduce_s(
        flops["grad_bytes"], num_workers, profile.interconnect_bandwidth_bytes_per_s, profile.allreduce_latency_s
    )
    data = flops["input_bytes_per_sample"] * per_worker / profile.mem_bandwidth_bytes_per_s
    overhead = share * profile.per_step_overhead_s
    if profile.cores and num_workers > 1:
        overhead += profile.contended_sync_s * min(1.0, num_workers / profile.cores)
    # Summed, not overlapped: a small model's gradients fill one DDP bucket, reduced after backward.
    step = compute + allreduce + data + overhead
    steps = math.ceil(train_rows / num_workers / per_worker)
    # Every epoch ends with a forward pass over the val rows, which the workers split between them.
    split = cfg.data.split
    val_rows = train_rows * split.val / (1 - split.val - split.test)
    forward = flops.get("forward_flops_per_sample", flops["flops_per_sample"] / 3)
    validation = share * val_rows / num_workers * forward / profile.flops_per_s
    epoch = steps * step + validation + share * profile.per_epoch_overhead_s
    return WorkerPrediction(
        num_workers,
        per_worker,
        compute,
        allreduce,
        data,
        overhead,
        step,
        steps,
        epoch,
        train_rows / epoch,
        efficiency=1.0,
    )


def recommend_workers(predictions: list[WorkerPrediction], *, min_efficiency: float = 0.8) -> int:
    """The most workers that keep min_efficiency of linear scaling (1 if none does)."""
    return max((p.num_workers for p in predictions if p.efficiency >= min_efficiency), default=1)


def asha_trial_epochs(num_samples: int, grace_period: int, reduction_factor: float, max_epochs: int) -> float:
    """Expected trial-epochs of successive halving, each rung keeping exactly 1/eta of its trials.

    Rungs r_k = g * eta**k for k = 0..K, all below max_epochs (Ray's rung at max_epochs itself, if
    any, stops nobody). n * eta**-k trials run the segment (r_{k-1}, r_k], with r_{-1} = 0, and the
    n * eta**-(K+1) that pass the last rung run on to max_epochs:

        E = n * [ sum_{k=0..K} eta**-k * (r_k - r_{k-1}) + eta**-(K+1) * (max_epochs - r_K) ]

    n=8, g=1, eta=2, max=10: rungs 1, 2, 4, 8 -> 8*1 + 4*1 + 2*2 + 1*4 + 0.5*2 = 21.
    Asynchronous promotion lets early trials through more often, so real searches run more.
    """
    total, previous = 0.0, 0.0
    rungs = scheduler.asha_rungs(grace_period, reduction_factor, max_epochs)
    for k, rung in enumerate(rungs):
        total += num_samples * reduction_factor**-k * (rung - previous)
        previous = rung
    return total + num_samples * reduction_factor ** -len(rungs) * (max_epochs - previous)


def predict_search(
    cfg: KilnConfig, profile: HardwareProfile, prediction: WorkerPrediction, max_concurrent: int
) -> dict:
    """Trial-epochs of the configured search, their training time, and wall time."""
    tune, epochs = cfg.tune, cfg.train.epochs
    if tune.scheduler.name in ("asha", "asha_promote"):  # promotion spends about what synchronous halving does
        trial_epochs = asha_trial_epochs(
            tune.num_samples, scheduler.grace_period(cfg), tune.scheduler.reduction_factor, epochs
        )
    else:
        trial_epochs = float(tune.num_samples * epochs)
    if profile.cores:  # on shared cores, trials run side by side only as far as the cores go
        max_concurrent = min(max_concurrent, max(1, profile.cores // prediction.num_workers))
    compute = trial_epochs * prediction.epoch_time_s
    in_actor = resources.in_trial_actor(cfg, prediction.num_workers)
    per_report = profile.in_actor_per_report_s if in_actor else profile.per_report_s
    per_trial = profile.in_actor_trial_fixed_cost_s if in_actor else profile.trial_fixed_cost_s
    wall = (compute + trial_epochs * per_report + tune.num_samples * per_trial) / max_concurrent
    return {
        "num_workers": prediction.num_workers,
        "trial_epochs": trial_epochs,
        "compute_s": compute,
        "trial_start_s": per_trial,
        "wall_time_s": wall,
    }


def plan(
    cfg: KilnConfig,
    *,
    profile: HardwareProfile,
    workers: list[int],
    input_dim: int,
    num_classes: int,
    train_rows: int,
    max_concurrent: int,
    slots=(),
    shapes: list[tuple[dict, HardwareProfile]] = (),
) -> dict:
    """Each worker count's prediction, the recommendation, and the search as configured. `shapes`: the
    search's model shapes (plan.shapes), each with its profile; the search is priced at their mean epoch."""
    flops = count_flops(cfg, input_dim, num_classes, slots=slots)

    def at(n: int) -> WorkerPrediction:
        return predict(cfg, profile, flops, num_workers=n, train_rows=train_rows)

    predictions = [at(n) for n in workers]
    extra = {"flops_per_sample": flops["flops_per_sample"], "param_bytes": flops["param_bytes"]}
    searched = at(cfg.train.num_workers)
    priced = [
        shape_epoch(
            cfg, sample, shape_profile, input_dim=input_dim, num_classes=num_classes, train_rows=train_rows, slots=slots
        )
        for sample, shape_profile in shapes
    ]
    if priced:
        searched = dataclasses.replace(searched, epoch_time_s=sum(p["epoch_time_s"] for p in priced) / len(priced))
    search = predict_search(cfg, profile, searched, max_concurrent)
    if priced:
        search["shapes"] = priced
    return {
        "workers": [{**dataclasses.asdict(p), **extra} for p in predictions],
        "recommended_workers": recommend_workers(predictions),
        "search": search,
        "model": flops,
        "hardware": profile.name,
    }


def shape_epoch(
    cfg: KilnConfig,
    sample: dict,
    profile: HardwareProfile,
    *,
    input_dim: int,
    num_classes: int,
    train_rows: int,
    slots=(),
) -> dict:
    """One shape's epoch at the configured worker count."""
    shaped = cfg.with_sample(sample)
    counted = count_flops(shaped, input_dim, num_classes, slots=slots)
    epoch = predict(shaped, profile, counted, num_workers=shaped.train.num_workers, train_rows=train_rows)
    return {"sample": sample, "epoch_time_s": epoch.epoch_time_s, "flops_per_sample": counted["flops_per_sample"]}
