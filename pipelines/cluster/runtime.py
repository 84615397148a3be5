"""Starting and stopping the Ray runtime, quietly unless asked."""

from __future__ import annotations

import logging
import os
import threading
import warnings

from pipelines import signals
from pipelines.cluster.ports import free_port
from pipelines.config import KilnConfig

QUIET_ENV = {
    "RAY_AIR_NEW_OUTPUT": "0",  # with verbose=0 this silences Tune's tables
    "RAY_TRAIN_ENABLE_V2_PROGRESS_LOGGING": "0",
    "RAY_DEDUP_LOGS": "1",
}
# Ray Train's controller collects each report on a poll (every 2 s by default) and a worker's next report
# waits for it, so every epoch cost at least 2 s; at 0.1 s an epoch costs what its work costs
# (a 1-worker fit of 6 reports of a trivial loop: 19.2 s at 2 s, 6.8 s at 0.1 s, on 2 cores).
SPEED_ENV = {"RAY_TRAIN_HEALTH_CHECK_INTERVAL_S": "0.1"}
API_SERVER_ENV = "RAY_API_SERVER_ADDRESS"  # where Ray's state API finds the dashboard
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
    import mlflow  # noqa: F401  (each of these configures its logger on import: quiet them after)
    import ray.data  # noqa: F401
    import ray.serve  # noqa: F401
    import ray.tune  # noqa: F401

    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", module=r"mlflow\..*")
    warnings.filterwarnings("ignore", category=UserWarning, message=r".*(type hints|Integer columns).*")
    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = False
    context.print_on_execution_start = False


def start(cfg: KilnConfig, *, verbose: bool = False, env: dict[str, str] | None = None) -> None:
    """A local runtime (or the cluster at ray.address). The dashboard stays on, bound to loopback:
    stopped trials' placement groups are freed through it (without it they leak and trials hang). `env` is
    set in this process first, so every process of a local runtime inherits it."""
    import ray

    if ray.is_initialized():
        return
    os.environ.update(env or {})  # e.g. the ingress's (deploy.ingress_env): read by every Ray process
    if not verbose:
        quiet()
    for key, value in SPEED_ENV.items():
        os.environ.setdefault(key, value)  # a local runtime's processes inherit the driver's environment
    common = dict(log_to_driver=verbose, logging_level=logging.INFO if verbose else logging.ERROR)
    if cfg.ray.address:
        env_vars = {key: os.environ[key] for key in SPEED_ENV}
        ray.init(address=cfg.ray.address, runtime_env={"env_vars": env_vars}, **common)
    else:
        # address="local": always a fresh runtime of our own, even when a `ray start` cluster runs here.
        port = own_dashboard()
        ray.init(
            address="local",
            num_cpus=local_cpus(cfg),
            include_dashboard=True,
            dashboard_host="127.0.0.1",
            dashboard_port=port,
            **common,
        )
    if threading.current_thread() is threading.main_thread():
        signals.install()  # ray.init's SIGTERM handler calls sys.exit(15) wherever the driver happens to be


def own_dashboard() -> int:
    """A free loopback port for this runtime's dashboard, named to every process it starts (Ray's state API
    reads RAY_API_SERVER_ADDRESS first, and Ray's processes inherit it from this one)."""
    # why: Train's placement-group cleaner auto-detects the Ray instance; with a second one on the machine that
    # failed, the cleaner died, and stopped trials' worker groups kept their CPUs.
    port = free_port()
    os.environ[API_SERVER_ENV] = f"http://127.0.0.1:{port}"
    return port


# The Serve applications this process deployed, so that stopping touches nothing else.
_apps: list[str] = []


def deployed_apps() -> list[str]:
    """The Serve applications this process deployed (and stops on the way out)."""
    return list(_apps)


def started_app(name: str) -> None:
    """Remember a Serve application this process deployed (deploy.start_serving)."""
    if name not in _apps:
        _apps.append(name)


def stop() -> None:
    """Disconnect, deleting only the endpoints this process deployed: `serve.shutdown()` would delete every
    application on a cluster, a colleague's endpoint included. A runtime Kiln started then goes down whole with
    ray.shutdown() (Serve's controller and proxies; HAProxy follows its actor, serving/haproxy-loopback.sh).
    Deleting first lets the replicas drain (2 s, serving/ingress.py); serve.shutdown() on our own runtime took
    about as long and printed a raylet error about its own controller on every Ctrl-C."""
    import ray

    try:
        from ray import serve

        for name in _apps:
            serve.delete(name)
    except Exception:  # Serve was never started, or the cluster is gone
        pass
    _apps.clear()
    ray.shutdown()
    os.environ.pop(API_SERVER_ENV, None)
