"""The trial scheduler: ASHA (Ray's AsyncHyperBandScheduler) or FIFO, and where ASHA's rungs fall."""

from __future__ import annotations

from pipelines.config import KilnConfig


def asha_rungs(grace_period: float, reduction_factor: float, max_epochs: float) -> list[float]:
    """Ray's ASHA milestones below max_epochs, lowest first: grace * eta**k. A trial is judged at the first
    epoch at or past each; Ray's rung at max_epochs itself, if any, stops nobody."""
    rungs, rung = [], float(grace_period)
    while rung < max_epochs:
        rungs.append(rung)
        rung *= reduction_factor
    return rungs


def build_scheduler(cfg: KilnConfig):
    from ray.tune.schedulers import ASHAScheduler, FIFOScheduler

    if cfg.tune.scheduler.name != "asha":
        return FIFOScheduler()
    # Rungs count epochs, not reports: after a worker-group restart an epoch may be reported twice.
    return ASHAScheduler(time_attr="epoch", max_t=cfg.train.epochs, grace_period=grace_period(cfg),
                         reduction_factor=cfg.tune.scheduler.reduction_factor)


def grace_period(cfg: KilnConfig) -> int:
    """tune.scheduler.grace_period, clamped to train.epochs (a longer grace would judge no trial)."""
    return min(cfg.tune.scheduler.grace_period, cfg.train.epochs)
