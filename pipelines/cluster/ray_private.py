"""Every private Ray API Kiln uses, in one room. Read against Ray 2.60.0: tests/unit/test_ray_private.py pins that
version, so an upgrade fails there, loudly, until each use below is re-read against the new source.

Each function says why it needs a private API and which public one would replace it.
"""

from __future__ import annotations

RAY_VERSION = "2.60.0"


def torch_framework():
    """What a Train V2 DataParallelTrainer subclass reports as its framework (Ray's dashboard labels the run with
    it). Why private: Kiln's trainer brings its own DDP backend (training/launch.py), and the framework enum lives
    in ray.train.v2._internal. Public replacement: TorchTrainer sets it itself, but takes TorchConfig's backend."""
    from ray.train.v2._internal.util import TrainingFramework

    return TrainingFramework.TORCH


def dashboard_address() -> str:
    """host:port of the dashboard of the Ray runtime this process is connected to, for the state API. Why private:
    with several Ray runtimes on one machine ray.util.state refuses to guess, and the connected runtime's address
    is only on the worker's node. Public replacement: the RayContext `ray.init` returns (`dashboard_url`), where
    the caller kept it."""
    import ray

    return ray._private.worker.global_worker.node.address_info["webui_url"]


def memory_summary(*, stats_only: bool = True) -> str:
    """`ray memory --stats-only` as text, for benchmarks/ingest.py's object-store figures. Why private: the CLI's
    own function is in ray._private.internal_api. Public replacement: running `ray memory --stats-only`."""
    from ray._private.internal_api import memory_summary as summary

    return summary(stats_only=stats_only)
