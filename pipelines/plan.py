"""The planner's cost model (Paleo-style): FLOPs, hardware profiles, DDP and ASHA arithmetic."""

from __future__ import annotations

import dataclasses
import functools
import math
import os
import socket
import statistics
import time
import timeit
import warnings
from pathlib import Path

import pydantic
import pydantic.dataclasses
import torch
import torch.nn.functional as F
import yaml
from pydantic import NonNegativeFloat, PositiveFloat, PositiveInt

from pipelines.config import ConfigError, KilnConfig, describe_error
from pipelines.models import build_model

BYTES_PER_PARAM = 4  # float32 weights; DDP all-reduces float32 gradients of the same size


def count_flops(cfg: KilnConfig, input_dim: int, num_classes: int, *, batch: int = 8) -> dict:
    """Per-sample forward and backward FLOPs of the configured model, as FlopCounterMode counts."""
    from torch.utils.flop_counter import FlopCounterMode

    model = build_model(cfg.model, input_dim=input_dim, num_classes=num_classes).train()
    x, y = torch.randn(batch, input_dim), torch.randint(0, num_classes, (batch,))
    with FlopCounterMode(display=False) as forward:
        loss = F.cross_entropy(model(x), y)
    with FlopCounterMode(display=False) as backward:
        loss.backward()
    num_params = sum(p.numel() for p in model.parameters())
    fwd, bwd = forward.get_total_flops() / batch, backward.get_total_flops() / batch
    return {"forward_flops_per_sample": fwd, "backward_flops_per_sample": bwd,
            "flops_per_sample": fwd + bwd, "num_params": num_params,
            "param_bytes": num_params * BYTES_PER_PARAM, "grad_bytes": num_params * BYTES_PER_PARAM,
            "input_bytes_per_sample": input_dim * 4 + 8}  # float32 features, int64 label


@pydantic.dataclasses.dataclass(frozen=True, config=pydantic.ConfigDict(extra="forbid"))
class HardwareProfile:
    name: str
    flops_per_s: PositiveFloat  # achieved, not peak, on this model's kind of work
    mem_bandwidth_bytes_per_s: PositiveFloat
    interconnect_bandwidth_bytes_per_s: PositiveFloat  # per direction, as a ring sees it
    allreduce_latency_s: NonNegativeFloat
    per_step_overhead_s: NonNegativeFloat  # the part of a step that does not grow with the batch
    per_epoch_overhead_s: NonNegativeFloat  # an epoch's fixed cost besides its steps and the validation pass
    trial_fixed_cost_s: NonNegativeFloat  # start and teardown of one Ray Train run
    cores: PositiveInt | None = None  # CPU cores the workers share; None = one accelerator each
    per_report_s: NonNegativeFloat = 0.0  # between epochs: checkpoint and report (Train's controller polls)
    # Per DDP step, when the workers share the cores with Ray's own processes: a collective waits for a
    # descheduled peer. Measured, not derived; scaled by num_workers / cores.
    contended_sync_s: NonNegativeFloat = 0.0
    notes: str = ""


# Vendor peaks times achieved fractions. The fractions are assumptions, not measurements: GEMMs as
# small as an MLP's reach ~40% of dense peak, copies ~80% of HBM/GDDR, NCCL rings ~80% of NVLink
# and ~70% of PCIe. Peaks are dense bf16 (train.py autocasts to bf16 on CUDA); fp32 in comments.
# Step, epoch and trial costs are CPU-side (eager launches, Ray Data, Ray Train start): assumed.
_GPU = dict(per_step_overhead_s=1e-3, per_epoch_overhead_s=0.05, trial_fixed_cost_s=20.0, per_report_s=0.12)
H100 = HardwareProfile("H100", 0.4 * 989e12, 0.8 * 3.35e12, 0.8 * 450e9, 30e-6, **_GPU)  # fp32 67T
A100 = HardwareProfile("A100", 0.4 * 312e12, 0.8 * 2.0e12, 0.8 * 300e9, 30e-6, **_GPU)  # 19.5T
L4 = HardwareProfile("L4", 0.4 * 121e12, 0.8 * 300e9, 0.7 * 32e9, 100e-6, **_GPU)  # 30T, PCIe 4
BUILTIN = {"h100": H100, "a100": A100, "l4": L4}

# Fallbacks for a machine like this one (2 shared cores, one torch thread per worker) from
# calibrate_local on the quickstart MLP, and the measured costs Kiln adds around the steps
# (benchmarks/quickstart.py and plan_accuracy.py): ~8 s from a trial's start to its first step plus
# ~2 s teardown; 0.1 s between epochs for Train's report poll; an epoch's own fixed cost is small now
# that small data stays in memory. At 2 DDP workers a step took ~2 ms where compute and an idle
# loopback all-reduce account for ~0.5 ms: the rest is the contended sync.
LOOPBACK_LATENCY_S, LOOPBACK_BANDWIDTH = 150e-6, 1.5e9
IN_WORKER_SLOWDOWN = 1.10
LOCAL = HardwareProfile("local", 4e10, 4e10, LOOPBACK_BANDWIDTH, LOOPBACK_LATENCY_S,
                        per_step_overhead_s=3e-4, per_epoch_overhead_s=0.002, trial_fixed_cost_s=10.0,
                        per_report_s=0.12, contended_sync_s=1.5e-3)


def local_cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def load_profile(name_or_path: str | Path) -> HardwareProfile:
    """H100, A100, L4, local (recorded defaults; calibrate_local measures afresh) or a YAML file."""
    key = str(name_or_path).lower()
    if key in BUILTIN:
        return BUILTIN[key]
    if key == "local":
        return dataclasses.replace(LOCAL, cores=local_cores())
    path = Path(name_or_path)
    if not path.is_file():
        raise ConfigError(f"{name_or_path}: unknown profile; use H100, A100, L4, local or YAML")
    raw = yaml.safe_load(path.read_text())
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of profile fields")
    known = [field.name for field in dataclasses.fields(HardwareProfile)]
    for key in raw:
        if key not in known:
            raise ConfigError(f"{path}: {key}: unknown field; expected one of {', '.join(known)}")
    try:
        return pydantic.TypeAdapter(HardwareProfile).validate_python({"name": path.stem, **raw})
    except pydantic.ValidationError as err:
        raise ConfigError(f"{path}: {describe_error(err)}") from None


def ring_allreduce_s(grad_bytes: float, num_workers: int, bandwidth: float,
                     latency: float) -> float:
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


def predict(cfg: KilnConfig, profile: HardwareProfile, flops: dict, *, num_workers: int,
            train_rows: int) -> WorkerPrediction:
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
    allreduce = ring_allreduce_s(flops["grad_bytes"], num_workers,
                                 profile.interconnect_bandwidth_bytes_per_s,
                                 profile.allreduce_latency_s)
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
    return WorkerPrediction(num_workers, per_worker, compute, allreduce, data, overhead, step,
                            steps, epoch, train_rows / epoch, efficiency=1.0)


def recommend_workers(predictions: list[WorkerPrediction], *, min_efficiency: float = 0.8) -> int:
    """The most workers that keep min_efficiency of linear scaling (1 if none does)."""
    return max((p.num_workers for p in predictions if p.efficiency >= min_efficiency), default=1)


def asha_trial_epochs(num_samples: int, grace_period: int, reduction_factor: float,
                      max_epochs: int) -> float:
    """Expected trial-epochs of successive halving, each rung keeping exactly 1/eta of its trials.

    Rungs r_k = g * eta**k for k = 0..K, all below max_epochs (Ray's rung at max_epochs itself, if
    any, stops nobody). n * eta**-k trials run the segment (r_{k-1}, r_k], with r_{-1} = 0, and the
    n * eta**-(K+1) that pass the last rung run on to max_epochs:

        E = n * [ sum_{k=0..K} eta**-k * (r_k - r_{k-1}) + eta**-(K+1) * (max_epochs - r_K) ]

    n=8, g=1, eta=2, max=10: rungs 1, 2, 4, 8 -> 8*1 + 4*1 + 2*2 + 1*4 + 0.5*2 = 21.
    Asynchronous promotion lets early trials through more often, so real searches run more.
    """
    total, previous, k = 0.0, 0.0, 0
    while grace_period * reduction_factor**k < max_epochs:
        rung = grace_period * reduction_factor**k
        total += num_samples * reduction_factor**-k * (rung - previous)
        previous, k = rung, k + 1
    return total + num_samples * reduction_factor**-k * (max_epochs - previous)


def predict_search(cfg: KilnConfig, profile: HardwareProfile, prediction: WorkerPrediction,
                   max_concurrent: int) -> dict:
    """Trial-epochs of the configured search, their training time, and wall time."""
    tune, epochs = cfg.tune, cfg.train.epochs
    if tune.scheduler.name == "asha":
        grace = min(tune.scheduler.grace_period, epochs)  # as tune.py clamps it
        trial_epochs = asha_trial_epochs(tune.num_samples, grace, tune.scheduler.reduction_factor,
                                         epochs)
    else:
        trial_epochs = float(tune.num_samples * epochs)
    if profile.cores:  # on shared cores, trials run side by side only as far as the cores go
        max_concurrent = min(max_concurrent, max(1, profile.cores // prediction.num_workers))
    compute = trial_epochs * prediction.epoch_time_s
    between_epochs = trial_epochs * profile.per_report_s
    wall = (compute + between_epochs + tune.num_samples * profile.trial_fixed_cost_s) / max_concurrent
    return {"num_workers": prediction.num_workers, "trial_epochs": trial_epochs,
            "compute_s": compute, "wall_time_s": wall}


def plan(cfg: KilnConfig, *, profile: HardwareProfile, workers: list[int], input_dim: int,
         num_classes: int, train_rows: int, max_concurrent: int) -> dict:
    """Each worker count's prediction, the recommendation, and the search as configured."""
    flops = count_flops(cfg, input_dim, num_classes)

    def at(n: int) -> WorkerPrediction:
        return predict(cfg, profile, flops, num_workers=n, train_rows=train_rows)

    predictions = [at(n) for n in workers]
    extra = {"flops_per_sample": flops["flops_per_sample"], "param_bytes": flops["param_bytes"]}
    return {"workers": [{**dataclasses.asdict(p), **extra} for p in predictions],
            "recommended_workers": recommend_workers(predictions),
            "search": predict_search(cfg, profile, at(cfg.train.num_workers), max_concurrent),
            "model": flops, "hardware": profile.name}


def format_table(plan_dict: dict) -> str:
    model, search = plan_dict["model"], plan_dict["search"]
    parts = ("compute_s", "allreduce_s", "data_s", "overhead_s", "step_time_s")
    lines = [f"{plan_dict['hardware']}: {model['num_params']:,} parameters, FLOPs per sample "
             f"{model['forward_flops_per_sample']:,.0f} forward + "
             f"{model['backward_flops_per_sample']:,.0f} backward; times per step in ms",
             f"{'workers':>7} {'batch':>5} {'steps':>5} " + " ".join(
                 f"{p.removesuffix('_s').removesuffix('_time'):>9}" for p in parts)
             + f" {'epoch_s':>8} {'samples/s':>9} {'efficiency':>10}"]
    for row in plan_dict["workers"]:
        times = " ".join(f"{row[p] * 1e3:>9.3f}" for p in parts)
        lines.append(f"{row['num_workers']:>7} {row['batch_size_per_worker']:>5} "
                     f"{row['steps_per_epoch']:>5} {times} {row['epoch_time_s']:>8.3f} "
                     f"{row['samples_per_s']:>9,.0f} {row['efficiency']:>10.2f}")
    lines.append(f"recommended workers: {plan_dict['recommended_workers']} (efficiency >= 0.8); "
                 f"search at {search['num_workers']} workers: {search['trial_epochs']:g} "
                 f"trial-epochs, {search['compute_s']:.1f} s training, "
                 f"~{search['wall_time_s']:.0f} s wall")
    return "\n".join(lines)


def save_png(plan_dict: dict, path: str | Path) -> None:
    """Step time by part and scaling efficiency against the worker count, side by side."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    rows = plan_dict["workers"]
    labels = [str(r["num_workers"]) for r in rows]
    fig = Figure(figsize=(10, 4), layout="constrained")
    FigureCanvasAgg(fig)
    steps, eff = fig.subplots(1, 2)
    bottom = [0.0] * len(rows)
    for key in ("compute_s", "allreduce_s", "data_s", "overhead_s"):
        heights = [r[key] * 1e3 for r in rows]
        steps.bar(labels, heights, bottom=bottom, label=key.removesuffix("_s"))
        bottom = [b + h for b, h in zip(bottom, heights, strict=True)]
    steps.set(xlabel="workers", ylabel="step time (ms)", title=plan_dict["hardware"])
    eff.plot(labels, [r["efficiency"] for r in rows], marker="o")
    eff.axhline(0.8, color="grey", linestyle="--", label="0.8: recommended above")
    eff.set(xlabel="workers", ylabel="scaling efficiency", ylim=(0, 1.05), title="efficiency")
    steps.legend()
    eff.legend()
    fig.savefig(path, dpi=100)


def calibrate_local(cfg: KilnConfig, input_dim: int, num_classes: int, *,
                    seconds: float = 2.0) -> HardwareProfile:
    """Measure this machine: step FLOP/s and fixed cost, copy bandwidth, loopback all-reduce."""
    flops = count_flops(cfg, input_dim, num_classes)
    batch = max(1, cfg.train.batch_size // cfg.train.num_workers)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # Ray gives each worker one thread here
    try:
        small = _step_time(cfg, input_dim, num_classes, batch, seconds / 2)
        large = _step_time(cfg, input_dim, num_classes, 8 * batch, seconds / 2)
        mem_bandwidth = _copy_bandwidth()
    finally:
        torch.set_num_threads(threads)
    # Fit t(b) = overhead + b * flops_per_sample / flops_per_s through the two batch sizes; when
    # noise swamps the slope, charge the whole step to compute.
    per_sample_s = (large - small) / (7 * batch)
    fits = 0 < per_sample_s * batch < small
    flops_per_s = flops["flops_per_sample"] / (per_sample_s if fits else small / batch)
    overhead = small - per_sample_s * batch if fits else 0.0
    notes = [f"step {small * 1e3:.3f} ms at batch {batch}, {large * 1e3:.3f} ms at {8 * batch}"]
    try:
        latency, bandwidth = _loopback_allreduce(flops["grad_bytes"])
        notes.append(f"gloo all-reduce {latency * 1e6:.0f} us + bytes / {bandwidth / 1e9:.2f} GB/s")
    except Exception as err:  # any failure means "use the recorded default"
        latency, bandwidth = LOOPBACK_LATENCY_S, LOOPBACK_BANDWIDTH
        notes.append(f"all-reduce not measured ({type(err).__name__}: {err}); default used")
        warnings.warn(notes[-1], stacklevel=2)
    # Measured here: the same loop ran 1.10x slower in a Ray Train worker than in a plain process (Ray's
    # threads in the worker and its processes beside it), and the calibration runs in a plain process.
    flops_per_s, overhead = flops_per_s / IN_WORKER_SLOWDOWN, overhead * IN_WORKER_SLOWDOWN
    return dataclasses.replace(
        LOCAL, flops_per_s=flops_per_s, mem_bandwidth_bytes_per_s=mem_bandwidth,
        interconnect_bandwidth_bytes_per_s=bandwidth, allreduce_latency_s=latency,
        per_step_overhead_s=overhead, cores=local_cores(), notes="; ".join(notes))


def _step_time(cfg, input_dim, num_classes, batch, budget_s) -> float:
    """Median time of one forward+backward+AdamW step over chunks of 10 steps."""
    model = build_model(cfg.model, input_dim=input_dim, num_classes=num_classes).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.train.lr)
    x, y = torch.randn(batch, input_dim), torch.randint(0, num_classes, (batch,))
    chunks, deadline = [], time.perf_counter() + budget_s
    while time.perf_counter() < deadline or len(chunks) < 4:
        started = time.perf_counter()
        for _ in range(10):
            optimizer.zero_grad(set_to_none=True)
            F.cross_entropy(model(x), y).backward()
            optimizer.step()
        chunks.append((time.perf_counter() - started) / 10)
    return statistics.median(chunks[1:])  # the first chunk warms up


def _copy_bandwidth(num_bytes: int = 64 << 20) -> float:
    """Bytes read plus written per second by one thread copying a buffer bigger than the caches."""
    src, dst = torch.ones(num_bytes // 4), torch.empty(num_bytes // 4)
    return 2 * num_bytes / min(timeit.repeat(functools.partial(dst.copy_, src), number=1, repeat=5))


def _loopback_allreduce(grad_bytes: int, *, timeout_s: float = 8.0) -> tuple[float, float]:
    """Latency and bandwidth of gloo all-reduce between two local processes (world size 2)."""
    import torch.multiprocessing as mp

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    big = max(4 << 20, 4 * grad_bytes)
    results = mp.get_context("spawn").SimpleQueue()
    context = mp.start_processes(_allreduce_worker, args=(port, [4, big], results), nprocs=2,
                                 join=False, start_method="spawn")
    deadline = time.monotonic() + timeout_s
    try:
        while not context.join(timeout=0.2):
            if time.monotonic() > deadline:
                raise TimeoutError(f"no result within {timeout_s:g} s")
    finally:
        for process in context.processes:
            if process.is_alive():
                process.terminate()
    tiny, large = results.get()
    # At N = 2 a ring moves 2(N-1)/N = 1 buffer per worker: t = latency + bytes / bandwidth.
    return tiny, (big - 4) / max(large - tiny, 1e-9)


def _allreduce_worker(rank: int, port: int, sizes: list[int], results) -> None:
    import datetime

    import torch.distributed as dist

    torch.set_num_threads(1)
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=2, timeout=datetime.timedelta(seconds=10))
    times = []
    for size in sizes:
        reduce = functools.partial(dist.all_reduce, torch.zeros(size // 4))
        reduce()  # connects the ring
        dist.barrier()
        times.append(min(timeit.repeat(reduce, number=10, repeat=5)) / 10)
    if rank == 0:
        results.put(times)
    dist.destroy_process_group()
