"""How many trials fit the cluster at once, and whether one ever can: plain arithmetic."""

from __future__ import annotations

import math

from pipelines.config import KilnConfig

# Tune's trial actor only waits on its Train run; its workers hold the real resources.
from pipelines.errors import ConfigError

TRIAL_ACTOR_CPU = 0.01
# Left free for Ray Data blocks, the Train controller and the serve replica.
RESERVED_CPU = 0.25


def resolve_use_gpu(cfg: KilnConfig, cluster_gpus: float) -> bool:
    if cfg.train.use_gpu == "auto":
        return cluster_gpus >= 1
    if cfg.train.use_gpu and cluster_gpus < 1:
        raise ConfigError("train.use_gpu: true, but the cluster has no GPUs; set it to auto or false")
    return bool(cfg.train.use_gpu)


def in_trial_actor(cfg: KilnConfig, num_workers: int | None = None) -> bool:
    """Whether every trial trains inside its Tune trial actor, reused from trial to trial (train.runner: auto,
    one worker, not searched over): no Train controller, worker process or second torch import per trial.
    `num_workers`: the same question for that many workers instead of train.num_workers (kiln plan's)."""
    workers = cfg.train.num_workers if num_workers is None else num_workers
    return cfg.train.runner == "auto" and workers == 1 and "train.num_workers" not in cfg.tune.search_space


def trial_resources(cfg: KilnConfig, use_gpu: bool) -> dict[str, float]:
    """What Tune reserves for a trial's actor: the worker's share when it trains there, a token otherwise."""
    if in_trial_actor(cfg):
        return {"cpu": cfg.train.cpus_per_worker, **({"gpu": 1} if use_gpu else {})}
    return {"cpu": TRIAL_ACTOR_CPU}


def trial_cpus(cfg: KilnConfig) -> float:
    if in_trial_actor(cfg):
        return cfg.train.cpus_per_worker
    return TRIAL_ACTOR_CPU + cfg.train.num_workers * cfg.train.cpus_per_worker


def max_concurrent_trials(cfg: KilnConfig, *, cluster_cpus: float, cluster_gpus: float) -> int:
    """Trials that fit side by side; fail at once when a single trial can never be placed."""
    need = trial_cpus(cfg)
    if need > cluster_cpus:
        raise ConfigError(
            f"train.num_workers: {cfg.train.num_workers} workers x train.cpus_per_worker "
            f"{cfg.train.cpus_per_worker:g} = {need:.2f} CPUs per trial, but the cluster has "
            f"{cluster_cpus:g}; lower train.num_workers or train.cpus_per_worker"
        )
    fit = max(1, math.floor((cluster_cpus - RESERVED_CPU) / need + 1e-9))
    if resolve_use_gpu(cfg, cluster_gpus):
        if cfg.train.num_workers > cluster_gpus:
            raise ConfigError(
                f"train.num_workers: {cfg.train.num_workers} workers need one GPU each, but the "
                f"cluster has {cluster_gpus:g}; lower train.num_workers or set train.use_gpu: false"
            )
        fit = min(fit, math.floor(cluster_gpus / cfg.train.num_workers))
    if cfg.tune.max_concurrent_trials:
        fit = min(fit, cfg.tune.max_concurrent_trials)
    return fit


# A worker group's placement group left with no live actor for this long has lost its Train run: Train's own
# start-up gives up after 60 s, so nothing of a live run stays empty this long.
ORPHAN_GRACE_S = 90.0


def orphaned_groups(
    groups: dict[str, list[dict]],
    occupied: set[str],
    empty_since: dict[str, float],
    *,
    now: float,
    grace_s: float = ORPHAN_GRACE_S,
) -> list[str]:
    """Created placement groups of training workers that have held no live actor for grace_s.

    `groups` maps each CREATED group to its bundles; Tune's trial-actor groups (a TRIAL_ACTOR_CPU bundle) are
    never candidates. `empty_since` carries the first time each group was seen empty, from call to call.
    A Train run killed between creating its group and registering it with Train's cleaner leaves such a group
    behind, and its CPUs stay reserved until the runtime stops: the next trials wait for them forever.
    """
    candidates = {
        pg
        for pg, bundles in groups.items()
        if not any(b.get("CPU") == TRIAL_ACTOR_CPU for b in bundles) and pg not in occupied
    }
    for pg in list(empty_since):
        if pg not in candidates:
            del empty_since[pg]
    for pg in candidates:
        empty_since.setdefault(pg, now)
    return sorted(pg for pg in candidates if now - empty_since[pg] >= grace_s)
