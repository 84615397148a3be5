"""The blend of the network and the baseline: a weighted average of their predictions (probabilities for a
classifier, values for a regression), its one weight chosen on the val split only. Pure numpy: the caller hands
in val predictions and truth, never test rows.

The weight is bagged ensemble selection (Caruana et al., "Getting the most out of ensemble selection", 2006):
each of RESAMPLES bootstrap resamples of val picks its best weight on a grid from 0 (the baseline alone) to 1 (the
network alone), and the blend takes their mean. One best weight on a val split of a few hundred rows follows a
handful of rows (one outlying house price, one borderline class); the mean of many resamples' best weights moves
only as far as the val evidence holds up, and lands on 1 or 0 only when nearly every resample agrees."""

from __future__ import annotations

import numpy as np

from pipelines import task_metrics

STEPS = 21  # weights 0, 0.05, ..., 1 on the network
GRID = np.linspace(0.0, 1.0, STEPS)
RESAMPLES = 200
SEED = 0  # the same val predictions give the same weight, run after run


def blended(network: np.ndarray, baseline: np.ndarray, weight: float) -> np.ndarray:
    """`weight` of the network's predictions plus the rest of the baseline's."""
    return weight * np.asarray(network, np.float64) + (1.0 - weight) * np.asarray(baseline, np.float64)


def fit_weight(network: np.ndarray, baseline: np.ndarray, truth: np.ndarray, task: str, metric: str) -> float:
    """The weight on the network: the mean of every resample's best grid weight, rounded to the grid. A
    resample's tie (val accuracy is coarse) goes to the network alone, then the baseline alone (one model serves
    at half the cost), then the middle of the tied weights."""
    scores = resampled_scores(network, baseline, np.asarray(truth), task, metric)  # [RESAMPLES, STEPS], higher: better
    best = np.array([best_weight(row) for row in scores])
    return round(float(np.round(best.mean() * (STEPS - 1)) / (STEPS - 1)), 4)


def best_weight(scores: np.ndarray) -> float:
    """The grid weight one resample prefers, by the ties rule of fit_weight."""
    tied = GRID[scores >= scores.max() - 1e-12 * max(1.0, abs(scores.max()))]
    if tied[-1] == 1.0:
        return 1.0
    if tied[0] == 0.0:
        return 0.0
    return float(tied[np.argmin(np.abs(tied - tied.mean()))])


def resampled_scores(
    network: np.ndarray, baseline: np.ndarray, truth: np.ndarray, task: str, metric: str
) -> np.ndarray:
    """Every grid weight's `metric` (signed: higher is better) on every bootstrap resample of the val rows. A
    metric that is a mean over rows (accuracy, log loss, squared and absolute error; r2 ranks weights as the
    squared error does) is summed from per-row values; f1 and auc are computed on each resample."""
    rng = np.random.default_rng(SEED)
    n = len(truth)
    draws = [np.bincount(rng.integers(0, n, n), minlength=n) for _ in range(RESAMPLES)]
    per_row = row_losses(network, baseline, truth, task, metric)
    if per_row is not None:  # [STEPS, n] losses: lower is better
        return -np.stack([per_row @ counts for counts in draws])
    score = {"f1_macro": lambda p, t: task_metrics.f1_macro(t, p.argmax(axis=1)), "auc": task_metrics.auc}.get(metric)
    if task != task_metrics.CLASSIFICATION or score is None:
        raise ValueError(f"blend: no weight fit for {task} metric {metric!r}")
    outputs = [blended(network, baseline, w) for w in GRID]
    picked = [np.repeat(np.arange(n), counts) for counts in draws]
    scores = np.array([[score(out[rows], truth[rows]) for out in outputs] for rows in picked])  # higher: better
    return np.nan_to_num(scores, nan=-np.inf)  # auc of a resample holding one class: no evidence for any weight


def row_losses(network, baseline, truth, task: str, metric: str) -> np.ndarray | None:
    """[STEPS, rows]: each row's loss under each grid weight, where `metric` is a mean of them (else None)."""
    if task == task_metrics.CLASSIFICATION and metric in ("accuracy", "log_loss"):
        losses = []
        for w in GRID:
            probabilities = blended(network, baseline, w)
            if metric == "accuracy":
                losses.append((probabilities.argmax(axis=1) != truth).astype(np.float64))
            else:
                losses.append(task_metrics.row_log_loss(probabilities, truth))
        return np.stack(losses)
    if task == task_metrics.REGRESSION and metric in ("rmse", "r2", "mae"):
        errors = np.stack([blended(network, baseline, w) - truth for w in GRID])
        return np.abs(errors) if metric == "mae" else errors**2
    return None
