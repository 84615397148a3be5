"""Metrics per task, in plain numpy (the training workers compute them every epoch; unit tests hold them to
scikit-learn's own).

classification: accuracy, f1_macro, log_loss, auc (binary: of the second class; multiclass: one-vs-rest, the
                macro mean over the classes present with both outcomes)
regression:     rmse, mae, r2 (in the label's own units)
"""

from __future__ import annotations

import numpy as np

CLASSIFICATION, REGRESSION = "classification", "regression"
TASKS = (CLASSIFICATION, REGRESSION)
NAMES = {CLASSIFICATION: ("accuracy", "f1_macro", "log_loss", "auc"), REGRESSION: ("rmse", "mae", "r2")}
PRIMARY = {CLASSIFICATION: "accuracy", REGRESSION: "rmse"}
HIGHER_IS_BETTER = {"accuracy", "f1_macro", "auc", "r2"}
# What every epoch reports whatever the task; the task's own metrics come as val_<name>.
COMMON = ("train_loss", "val_loss", "epoch_time_s")


def reported(task: str) -> tuple[str, ...]:
    """The metrics an epoch of `task` reports, any of which `tune.metric` may name."""
    return (*COMMON, *(f"val_{name}" for name in NAMES[task]))


def mode_of(metric: str) -> str:
    """max for a score, min for a loss or an error, whatever its prefix (val_, test_)."""
    return "max" if metric.split("_", 1)[-1] in HIGHER_IS_BETTER else "min"


def task_of(metric: str) -> str | None:
    """The task whose metric this is; None for those every task reports (losses, times)."""
    name = metric.split("_", 1)[-1]
    return next((task for task, names in NAMES.items() if name in names), None)


def compute(task: str, outputs: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    """classification: `outputs` are class probabilities [N, K], `truth` class indices; regression: both are
    values in the label's units."""
    return classification(outputs, truth) if task == CLASSIFICATION else regression(outputs, truth)


def classification(probabilities: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    probabilities = np.asarray(probabilities, dtype=np.float64)
    truth = np.asarray(truth, dtype=np.int64)
    if len(truth) == 0:
        return {name: float("nan") for name in NAMES[CLASSIFICATION]}
    predicted = probabilities.argmax(axis=1)
    return {
        "accuracy": float(np.mean(predicted == truth)),
        "f1_macro": f1_macro(truth, predicted),
        "log_loss": float(np.mean(row_log_loss(probabilities, truth))),
        "auc": auc(probabilities, truth),
    }


def row_log_loss(probabilities: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """Each row's log loss: minus the log of its true class's share of the row's probabilities, clipped off 0
    and 1."""
    eps = np.finfo(np.float64).eps
    chosen = probabilities[np.arange(len(truth)), truth] / probabilities.sum(axis=1)
    return -np.log(np.clip(chosen, eps, 1 - eps))


def f1_macro(truth: np.ndarray, predicted: np.ndarray) -> float:
    """The mean F1 over every class that is true or predicted somewhere (as scikit-learn's average="macro")."""
    scores = []
    for cls in np.union1d(truth, predicted):
        tp = np.sum((predicted == cls) & (truth == cls))
        fp, fn = np.sum((predicted == cls) & (truth != cls)), np.sum((predicted != cls) & (truth == cls))
        scores.append(2 * tp / (2 * tp + fp + fn) if tp else 0.0)
    return float(np.mean(scores))


def auc(probabilities: np.ndarray, truth: np.ndarray) -> float:
    """ROC AUC: binary, of the second class's probability; multiclass, one-vs-rest macro. NaN when no class
    has both outcomes."""
    if probabilities.shape[1] == 2:
        return binary_auc(probabilities[:, 1], truth == 1)
    scores = [binary_auc(probabilities[:, cls], truth == cls) for cls in range(probabilities.shape[1])]
    present = [s for s in scores if s == s]
    return float(np.mean(present)) if present else float("nan")


def binary_auc(scores: np.ndarray, positive: np.ndarray) -> float:
    """The Mann-Whitney statistic: the chance a positive row outscores a negative one (ties count half)."""
    num_pos = int(positive.sum())
    num_neg = len(positive) - num_pos
    if num_pos == 0 or num_neg == 0:
        return float("nan")
    _, inverse, counts = np.unique(scores, return_inverse=True, return_counts=True)
    ranks = (np.cumsum(counts) - (counts - 1) / 2)[inverse]  # 1-based, ties averaged
    return float((ranks[positive].sum() - num_pos * (num_pos + 1) / 2) / (num_pos * num_neg))


def regression(predicted: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    predicted = np.asarray(predicted, dtype=np.float64).reshape(-1)
    truth = np.asarray(truth, dtype=np.float64).reshape(-1)
    if len(truth) == 0:
        return {name: float("nan") for name in NAMES[REGRESSION]}
    errors = predicted - truth
    residual, total = float(np.sum(errors**2)), float(np.sum((truth - truth.mean()) ** 2))
    r2 = 1 - residual / total if total > 0 else (1.0 if residual == 0 else 0.0)
    return {"rmse": float(np.sqrt(np.mean(errors**2))), "mae": float(np.mean(np.abs(errors))), "r2": r2}


def prefixed(prefix: str, values: dict[str, float]) -> dict[str, float]:
    return {f"{prefix}_{name}": value for name, value in values.items()}


def roc_curve(scores: np.ndarray, positive: np.ndarray, *, points: int = 200) -> tuple[list[float], list[float]]:
    """(false positive rates, true positive rates) at every distinct threshold, thinned to about `points`."""
    order = np.argsort(-np.asarray(scores), kind="mergesort")
    scores, positive = np.asarray(scores)[order], np.asarray(positive, dtype=bool)[order]
    last_of_each = np.r_[np.flatnonzero(np.diff(scores)), len(scores) - 1]
    tp, fp = np.cumsum(positive)[last_of_each], np.cumsum(~positive)[last_of_each]
    tpr = np.r_[0.0, tp / max(positive.sum(), 1)]
    fpr = np.r_[0.0, fp / max((~positive).sum(), 1)]
    keep = np.unique(np.r_[np.linspace(0, len(fpr) - 1, min(points, len(fpr))).round().astype(int), len(fpr) - 1])
    return fpr[keep].tolist(), tpr[keep].tolist()
