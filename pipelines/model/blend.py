"""The blend of the network and the baseline: a weighted average of their predictions (probabilities for a
classifier, values for a regression), its one weight fitted on the val split only. Pure numpy: the caller hands
in val predictions and truth, never test rows."""

from __future__ import annotations

import numpy as np

from pipelines import task_metrics

STEPS = 21  # weights 0, 0.05, ..., 1 on the network


def blended(network: np.ndarray, baseline: np.ndarray, weight: float) -> np.ndarray:
    """`weight` of the network's predictions plus the rest of the baseline's."""
    return weight * np.asarray(network, np.float64) + (1.0 - weight) * np.asarray(baseline, np.float64)


def fit_weight(
    network: np.ndarray, baseline: np.ndarray, truth: np.ndarray, task: str, metric: str
) -> tuple[float, float]:
    """(weight on the network, the blend's val `metric`) over a grid of weights in [0, 1]. Ties on `metric` (val
    accuracy is coarse) go to the lower val log loss for a classifier, then to the weight nearest 0.5: when val
    cannot tell two model families apart, their average generalises best."""
    sign = 1.0 if task_metrics.mode_of(metric) == "max" else -1.0
    scored = []
    for weight in np.linspace(0.0, 1.0, STEPS):
        metrics = task_metrics.compute(task, blended(network, baseline, weight), truth)
        loss = metrics.get("log_loss", 0.0) if metric != "log_loss" else 0.0
        scored.append(((sign * metrics[metric], -loss, -abs(weight - 0.5)), round(float(weight), 4), metrics[metric]))
    _, weight, score = max(scored, key=lambda entry: entry[0])
    return weight, float(score)
