"""Starting and stopping the Ray runtime, quietly unless asked."""

from __future__ import annotations

import logging
import os
import warnings

from pipelines.config import KilnConfig

QUIET_ENV = {
    "RAY_AIR_NEW_OUTPUT": "0",  # with verbose=0 this silences Tune's tables
    "RAY_TRAIN_ENABLE_V2_PROGRESS_LOGGING": "0",
    "RAY_DEDUP_LOGS": "1",
}
QUIET_LOGGERS = ("ray", "ray.tune", "ray.train", "ray.data", "ray.serve", "mlflow", "alembic")


def local_cpus(cfg: KilnConfig) -> int:
    return cfg.ray.num_cpus or os.cpu_count() or 1


def local_gpus() -> int:
    import torch

    return torch.cuda.device_count()


def quiet() -> None:
    """Keep Ray's and MLflow's own chatter out of the terminal (`--verbose` skips this)."""
    for key, value in QUIET_ENV.items():
        os.environ.setdefault(key, value)
    import ray.data  # noqa: F401  (each of these configures its logger on import: quiet them after)
    import ray.serve  # noqa: F401
    import ray.tune  # noqa: F401

    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", module=r"mlflow\..*")
    warnings.filterwarnings("ignore", category=UserWarning, message=r".*(type hints|Integer columns).*")
    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = False
    context.print_on_execution_start = False


def start(cfg: KilnConfig, *, verbose: bool = False) -> None:
    """A local runtime (or the cluster at ray.address). The dashboard stays on, bound to loopback:
    stopped trials' placement groups are freed through it (without it they leak and trials hang)."""
    import ray

    if ray.is_initialized():
        return
    if not verbose:
        quiet()
    common = dict(log_to_driver=verbose, logging_level=logging.INFO if verbose else logging.ERROR)
    if cfg.ray.address:
        ray.init(address=cfg.ray.address, **common)
    else:
        # address="local": always a fresh runtime of our own, even when a `ray start` cluster runs here.
        ray.init(address="local", num_cpus=local_cpus(cfg), include_dashboard=True, dashboard_host="127.0.0.1",
                 **common)


def stop() -> None:
    import ray

    try:
        from ray import serve

        serve.shutdown()
    except Exception:  # Serve was never started
        pass
    ray.shutdown()
