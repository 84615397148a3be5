"""Hardware profiles: what a step costs on an H100, A100, L4, this machine, or a profile file."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import pydantic
import pydantic.dataclasses
import yaml
from pydantic import NonNegativeFloat, PositiveFloat, PositiveInt

from pipelines.config import describe_error
from pipelines.errors import ConfigError


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
    # A 1-worker trial trained in its reused Tune trial actor (train.runner: auto): no Train run to start, reports
    # straight to Tune. These defaults, for profiles that do not say (LOCAL does), are from an earlier run of
    # benchmarks/trial_cost.py on 2 cores: 1.6 s a trial outside its epochs, over 4.4 epochs a trial.
    in_actor_trial_fixed_cost_s: NonNegativeFloat = 1.2
    in_actor_per_report_s: NonNegativeFloat = 0.08
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
# (benchmarks/trial_cost.py, an idle day, 2026-12-04): a Ray Train DDP trial 9.4 s outside its 3.75 epochs, a
# 1-worker trial in its reused actor 0.57 s outside its 4.4; 0.1 s between epochs for Train's report poll; an
# epoch's own fixed cost is small now that small data stays in memory. At 2 DDP workers a step took ~2 ms
# where compute and an idle loopback all-reduce account for ~0.5 ms: the rest is the contended sync.
LOOPBACK_LATENCY_S, LOOPBACK_BANDWIDTH = 150e-6, 1.5e9


IN_WORKER_SLOWDOWN = 1.10


LOCAL = HardwareProfile(
    "local",
    4e10,
    4e10,
    LOOPBACK_BANDWIDTH,
    LOOPBACK_LATENCY_S,
    per_step_overhead_s=3e-4,
    per_epoch_overhead_s=0.002,
    trial_fixed_cost_s=8.9,
    per_report_s=0.12,
    contended_sync_s=1.5e-3,
    in_actor_trial_fixed_cost_s=0.44,
    in_actor_per_report_s=0.03,
)


# Those costs are process starts, imports and Python bookkeeping: they follow the speed of the cores, and shared
# cores change speed from day to day. On a day this machine imported torch and ray.train in 5.46 s (1.91 s on
# the day LOCAL's costs were measured) a trial cost 2.9x as much outside its epochs and a small-MLP step 2.8x:
# calibrate_local times speed_probe and scales the costs by its time against the time it took that day.
REFERENCE_PROBE_S = 0.18  # s, on that day (torch + ray.train imported in 1.9 s)
CPU_BOUND_COSTS = ("trial_fixed_cost_s", "in_actor_trial_fixed_cost_s", "in_actor_per_report_s")
SPEED_FACTOR_RANGE = (0.25, 4.0)  # a probe disturbed past this says more about the disturbance than the cores


def at_speed(profile: HardwareProfile, probe_s: float) -> tuple[HardwareProfile, float]:
    """`profile` with its CPU-bound costs scaled to cores on which speed_probe took `probe_s`, and the factor
    (clamped to SPEED_FACTOR_RANGE). Train's report poll (per_report_s) is a fixed interval and stays."""
    low, high = SPEED_FACTOR_RANGE
    factor = min(high, max(low, probe_s / REFERENCE_PROBE_S))
    scaled = {name: getattr(profile, name) * factor for name in CPU_BOUND_COSTS}
    return dataclasses.replace(profile, **scaled), factor


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
