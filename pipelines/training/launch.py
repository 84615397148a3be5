"""Launch a training run from the driver side: the Ray Train trainer, its DDP set-up, the loop's entry point.

Nothing here imports torch: `DDPConfig` sets up TorchConfig's process group by calling Ray's own worker-side
functions on the workers, and the loop's module (training.loop) is imported there.
"""

# why: with Ray's TorchTrainer, Tune's trial actor and Train's controller both imported torch (TorchConfig's
# module does), about 1 s of a busy core each on every trial's critical path.

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from typing import Any

from ray.train.backend import Backend, BackendConfig

from pipelines.cluster import storage
from pipelines.config import KilnConfig
from pipelines.data.preprocessing import Preprocessing

PROCESS_GROUP_TIMEOUT_S = 1800  # TorchConfig's default
SHUTDOWN_TIMEOUT_S = 30


def train_loop_per_worker(loop_config: dict[str, Any]) -> None:
    """Runs on every worker: training.loop's loop, imported there."""
    from pipelines.training import loop

    loop.train_loop_per_worker(loop_config)


def loop_config(
    cfg: KilnConfig,
    *,
    preprocessing: Preprocessing,
    arrays: dict[str, Any] | None,
    started_at: float | None,
    train_rows: int | None = None,
) -> dict[str, Any]:
    """What the loop reads, typed: the train and model sections, not the whole config; `train_rows` sizes the
    learning-rate schedule when the data streams (in memory, the loop counts its rows)."""
    return {
        "train": cfg.train,
        "model": cfg.model,
        "preprocessing": preprocessing,
        "arrays": arrays,
        "started_at": started_at or time.time(),
        "train_rows": train_rows,
    }


def build_trainer(
    cfg: KilnConfig,
    *,
    datasets: dict[str, Any],
    preprocessing: Preprocessing,
    name: str,
    use_gpu: bool,
    callbacks: list[Any] = (),
    started_at: float | None = None,
    arrays: dict[str, Any] | None = None,
    train_rows: int | None = None,
):
    """A Train run of `cfg`: DDP over train.num_workers workers. Data that fits train.cache_shard_mb comes
    as `arrays` (object refs of (x, y), see ingest); else Ray Data `datasets`."""
    import ray.train
    from ray.train import DataConfig
    from ray.train.v2.api.data_parallel_trainer import DataParallelTrainer

    resources = {"CPU": cfg.train.cpus_per_worker, **({"GPU": 1} if use_gpu else {})}
    in_memory = arrays is not None
    return DataParallelTrainer(
        train_loop_per_worker,
        train_loop_config=loop_config(
            cfg, preprocessing=preprocessing, arrays=arrays, started_at=started_at, train_rows=train_rows
        ),
        backend_config=DDPConfig(backend="nccl" if use_gpu else "gloo"),
        scaling_config=ray.train.ScalingConfig(
            num_workers=cfg.train.num_workers,
            use_gpu=use_gpu,
            resources_per_worker=resources,
            placement_strategy=cfg.train.placement_strategy,
        ),
        run_config=ray.train.RunConfig(
            name=name,
            **storage.ray_storage(cfg),
            checkpoint_config=ray.train.CheckpointConfig(
                num_to_keep=cfg.train.keep_checkpoints,
                checkpoint_score_attribute=cfg.tune.metric,
                checkpoint_score_order=cfg.tune.mode,
            ),
            failure_config=ray.train.FailureConfig(max_failures=cfg.train.max_failures),
            callbacks=list(callbacks),
        ),
        datasets=None if in_memory else datasets,
        dataset_config=DataConfig(datasets_to_split=["train"]),
    )


class DeviceContext:
    """Around the loop on each worker, as TorchConfig's: the worker's CUDA device, when it has one."""

    def __enter__(self):
        from ray.train.torch.config import TorchConfigContextManager

        TorchConfigContextManager().__enter__()

    def __exit__(self, *exc) -> bool:
        return False


@dataclass
class DDPConfig(BackendConfig):
    """TorchConfig's process group (gloo on CPUs, nccl on GPUs, set up over env://), declared without torch."""

    backend: str = "gloo"
    timeout_s: int = PROCESS_GROUP_TIMEOUT_S

    @property
    def backend_cls(self):
        return DDPBackend

    @property
    def train_func_context(self):
        return DeviceContext

    @property
    def framework(self):
        from pipelines.cluster import ray_private

        return ray_private.torch_framework()  # what Ray's dashboard shows the run as


def _address_and_free_port() -> tuple[str, int]:
    """On a worker: its node's address and a port free there, for the process group's rendezvous (what
    ray.train._internal.utils.get_address_and_port does, from public APIs)."""
    import socket

    import ray

    address = ray.util.get_node_ip_address()
    with socket.socket(socket.AF_INET6 if ":" in address else socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("", 0))
        return address, s.getsockname()[1]


class DDPBackend(Backend):
    """Runs in Train's controller: what TorchConfig's backend does for a V2 worker group, with every torch
    call made on the workers."""

    share_cuda_visible_devices: bool = True

    def on_start(self, worker_group, backend_config: DDPConfig) -> None:
        import ray

        address, port = worker_group.execute_single(0, _address_and_free_port)
        worker_group.execute(_set_distributed_env, address=address, port=port)
        ray.get(
            [
                worker_group.execute_single_async(
                    rank,
                    _setup_process_group,
                    backend=backend_config.backend,
                    world_rank=rank,
                    world_size=len(worker_group),
                    init_method="env://",
                    timeout_s=backend_config.timeout_s,
                )
                for rank in range(len(worker_group))
            ]
        )

    def on_shutdown(self, worker_group, backend_config: DDPConfig) -> None:
        import ray
        from ray.exceptions import GetTimeoutError

        futures = worker_group.execute_async(_shutdown, destroy_process_group=len(worker_group) > 1)
        try:
            ray.get(futures, timeout=SHUTDOWN_TIMEOUT_S)
        except GetTimeoutError:
            pass  # the workers are being removed anyway


# On the workers: Ray's own functions, imported there (they import torch).


def _set_distributed_env(address: str, port: int) -> None:
    """Rank 0's address for env:// and the ranks torch.distributed reads (RANK, WORLD_SIZE, LOCAL_RANK...)."""
    from ray.train.torch.config import _set_torch_distributed_env_vars

    os.environ.update(MASTER_ADDR=address, MASTER_PORT=str(port))
    _set_torch_distributed_env_vars()


def _setup_process_group(**kwargs) -> None:
    from ray.train.torch.config import _setup_torch_process_group

    _setup_torch_process_group(**kwargs)


def _shutdown(destroy_process_group: bool) -> None:
    from ray.train.torch.config import _shutdown_torch

    _shutdown_torch(destroy_process_group=destroy_process_group)
