"""Calibrate this machine's profile on the model's own shapes: step FLOP/s, copy bandwidth, loopback all-reduce."""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import os
import statistics
import time
import timeit
import warnings

import torch
import torch.nn.functional as F

from pipelines.cluster.ports import free_port
from pipelines.config import KilnConfig
from pipelines.model.networks import build_model, sample_input
from pipelines.plan.flops import count_flops
from pipelines.plan.hardware import (
    IN_WORKER_SLOWDOWN,
    LOCAL,
    LOOPBACK_BANDWIDTH,
    LOOPBACK_LATENCY_S,
    HardwareProfile,
    at_speed,
    local_cores,
)


def calibrate_local(
    cfg: KilnConfig, input_dim: int, num_classes: int, *, slots=(), seconds: float = 2.0
) -> HardwareProfile:
    """Measure this machine: step FLOP/s and fixed cost, copy bandwidth, loopback all-reduce."""
    flops = count_flops(cfg, input_dim, num_classes, slots=slots)
    with _one_thread():
        flops_per_s, overhead, step_note = _step_speed(cfg, input_dim, num_classes, slots, seconds)
        mem_bandwidth = _copy_bandwidth()
        probe_s = speed_probe()
    machine, factor = at_speed(LOCAL, probe_s)
    notes = [step_note, f"speed probe {probe_s:.2f} s: trial start-up costs x{factor:.2f} of the recorded"]
    try:
        latency, bandwidth = _loopback_allreduce(flops["grad_bytes"])
        notes.append(f"gloo all-reduce {latency * 1e6:.0f} us + bytes / {bandwidth / 1e9:.2f} GB/s")
    except Exception as err:  # any failure means "use the recorded default"
        latency, bandwidth = LOOPBACK_LATENCY_S, LOOPBACK_BANDWIDTH
        notes.append(f"all-reduce not measured ({type(err).__name__}: {err}); default used")
        warnings.warn(notes[-1], stacklevel=2)
    return dataclasses.replace(
        machine,
        flops_per_s=flops_per_s,
        mem_bandwidth_bytes_per_s=mem_bandwidth,
        interconnect_bandwidth_bytes_per_s=bandwidth,
        allreduce_latency_s=latency,
        per_step_overhead_s=overhead,
        cores=local_cores(),
        notes="; ".join(notes),
    )


def for_shape(
    profile: HardwareProfile, cfg: KilnConfig, input_dim: int, num_classes: int, *, slots=(), seconds: float = 1.0
) -> HardwareProfile:
    """`profile` with the step speed of `cfg`'s model measured afresh: a Transformer's FLOPs run far slower
    than an MLP's on the same cores, so each shape of a search gets its own. The rest is the machine's."""
    with _one_thread():
        flops_per_s, overhead, note = _step_speed(cfg, input_dim, num_classes, slots, seconds)
    return dataclasses.replace(profile, flops_per_s=flops_per_s, per_step_overhead_s=overhead, notes=note)


@contextlib.contextmanager
def _one_thread():
    """Ray gives each worker one thread here; calibrate as it will run."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def _step_speed(cfg, input_dim, num_classes, slots, seconds) -> tuple[float, float, str]:
    """FLOP/s and per-step overhead of cfg's model on one thread, as a Ray Train worker would run it."""
    flops = count_flops(cfg, input_dim, num_classes, slots=slots)
    batch = max(1, cfg.train.batch_size // cfg.train.num_workers)
    small = _step_time(cfg, input_dim, num_classes, batch, seconds / 2, slots)
    times = 8 if 8 * small < seconds else 2  # a slow step (long texts through attention) is timed at 2x only
    large = _step_time(cfg, input_dim, num_classes, times * batch, seconds / 2, slots)
    # Fit t(b) = overhead + b * flops_per_sample / flops_per_s through the two batch sizes; when
    # noise swamps the slope, charge the whole step to compute.
    per_sample_s = (large - small) / ((times - 1) * batch)
    fits = 0 < per_sample_s * batch < small
    flops_per_s = flops["flops_per_sample"] / (per_sample_s if fits else small / batch)
    overhead = small - per_sample_s * batch if fits else 0.0
    note = f"step {small * 1e3:.3f} ms at batch {batch}, {large * 1e3:.3f} ms at {times * batch}"
    # Measured here: the same loop ran 1.10x slower in a Ray Train worker than in a plain process (Ray's
    # threads in the worker and its processes beside it), and the calibration runs in a plain process.
    return flops_per_s / IN_WORKER_SLOWDOWN, overhead * IN_WORKER_SLOWDOWN, note


def _step_time(cfg, input_dim, num_classes, batch, budget_s, slots=()) -> float:
    """Median time of one forward+backward+AdamW step over chunks of up to 10 steps, after one step of warm-up:
    within about `budget_s`, however slow a step is (at least three chunks)."""
    model = build_model(cfg.model, input_dim=input_dim, num_classes=num_classes, slots=slots).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.train.lr)
    x, y = sample_input(input_dim, slots, batch), torch.randint(0, num_classes, (batch,))

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        F.cross_entropy(model(x), y).backward()
        optimizer.step()

    started = time.perf_counter()
    step()
    steps = max(1, min(10, int(budget_s / 4 / max(time.perf_counter() - started, 1e-9))))
    chunks, deadline = [], time.perf_counter() + budget_s
    while time.perf_counter() < deadline or len(chunks) < 3:
        started = time.perf_counter()
        for _ in range(steps):
            step()
        chunks.append((time.perf_counter() - started) / steps)
    return statistics.median(chunks)


def speed_probe(steps: int = 400, repeats: int = 3) -> float:
    """Seconds for a fixed workload as small and Python-bound as a trial's start-up: `steps` AdamW steps of a
    64-128-64-10 MLP at batch 64 on the calling thread, the fastest of `repeats`. Fixed, not cfg's model, so
    that hardware.REFERENCE_PROBE_S, its time on the day LOCAL's costs were measured, stays comparable."""
    generator = torch.Generator().manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Linear(64, 128), torch.nn.ReLU(), torch.nn.Linear(128, 64), torch.nn.ReLU(), torch.nn.Linear(64, 10)
    )
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    x, y = torch.randn(64, 64, generator=generator), torch.randint(0, 10, (64,), generator=generator)

    def run() -> None:
        for _ in range(steps):
            optimizer.zero_grad(set_to_none=True)
            F.cross_entropy(model(x), y).backward()
            optimizer.step()

    run()  # warm-up: the first steps allocate
    return min(timeit.repeat(run, number=1, repeat=repeats))


def _copy_bandwidth(num_bytes: int = 64 << 20) -> float:
    """Bytes read plus written per second by one thread copying a buffer bigger than the caches."""
    src, dst = torch.ones(num_bytes // 4), torch.empty(num_bytes // 4)
    return 2 * num_bytes / min(timeit.repeat(functools.partial(dst.copy_, src), number=1, repeat=5))


def _loopback_allreduce(grad_bytes: int, *, timeout_s: float = 8.0) -> tuple[float, float]:
    """Latency and bandwidth of gloo all-reduce between two local processes (world size 2)."""
    import torch.multiprocessing as mp

    port = free_port()
    big = max(4 << 20, 4 * grad_bytes)
    results = mp.get_context("spawn").SimpleQueue()
    context = mp.start_processes(
        _allreduce_worker, args=(port, [4, big], results), nprocs=2, join=False, start_method="spawn"
    )
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
