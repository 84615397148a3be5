"""Which model a run registers: the searched network, the baseline, or their blend, chosen on the val split by
tune.metric (the blend's weight by bagged selection over resamples of val, blend.fit_weight). The test split only
reports: every candidate's test metrics are computed and logged, and none of them decides anything. Pure numpy:
the caller hands in predictions."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pipelines import task_metrics
from pipelines.model import blend

ORDER = ("network", "blend", "baseline")  # a tie on val goes to the earlier one


@dataclass(frozen=True)
class Candidate:
    name: str
    weight: float | None  # blend: the weight on the network's predictions
    val: dict[str, float]
    test: dict[str, float]

    @property
    def label(self) -> str:
        return f"blend ({self.weight:.2f} network)" if self.name == "blend" else self.name

    def outputs(self, network: np.ndarray, baseline: np.ndarray | None) -> np.ndarray:
        if self.name == "network":
            return network
        if self.name == "baseline":
            return baseline
        return blend.blended(network, baseline, self.weight)


@dataclass(frozen=True)
class Choice:
    winner: Candidate
    candidates: list[Candidate]
    metric: str  # the task metric the choice was made on (accuracy, rmse, ...)

    def metrics(self) -> dict[str, float]:
        """candidate_<name>_val_<metric> and candidate_<name>_test_<metric> for every candidate and metric."""
        return {
            f"candidate_{c.name}_{split}_{name}": value
            for c in self.candidates
            for split, values in (("val", c.val), ("test", c.test))
            for name, value in values.items()
        }

    @property
    def runners_up(self) -> list[Candidate]:
        return [c for c in self.candidates if c is not self.winner]

    def line(self) -> str:
        """`registered candidate: blend (0.60 network) val_accuracy=0.9610; network 0.9550, baseline 0.9400`,
        and how the blend's weight was chosen when the blend was a candidate."""
        said = f"registered candidate: {self.said('val')}"
        if any(c.name == "blend" for c in self.candidates):
            said += f" (the blend's weight: the mean best of {blend.RESAMPLES} resamples of val)"
        return said

    def test_line(self) -> str:
        """`blend (0.60 network) test_accuracy=0.9580; network 0.9500, baseline 0.9450`: the same, on test."""
        return self.said("test")

    def said(self, split: str) -> str:
        values = {c.name: (c.val if split == "val" else c.test)[self.metric] for c in self.candidates}
        rest = ", ".join(f"{c.label} {values[c.name]:.4f}" for c in self.runners_up)
        said = f"{self.winner.label} {split}_{self.metric}={values[self.winner.name]:.4f}"
        return f"{said}; {rest}" if rest else said


def network_alone(test_metrics: dict[str, float]) -> Choice:
    """The choice when the network is the only candidate (no baseline, no val rows, or registry.candidates:
    [network]): nothing scored on val, its test metrics (`test_<name>`) as evaluated."""
    test = {name.removeprefix("test_"): value for name, value in test_metrics.items()}
    network = Candidate("network", None, {}, test)
    return Choice(network, [network], "")


def task_metric(tune_metric: str, task: str) -> str:
    """The task metric a candidate is judged on: tune.metric without its split (val_loss: the task's loss)."""
    name = tune_metric.removeprefix("val_")
    if name == "loss":
        return "log_loss" if task == task_metrics.CLASSIFICATION else "rmse"
    return name


def choose(
    names: list[str],
    task: str,
    metric: str,
    *,
    val: tuple[np.ndarray, np.ndarray | None, np.ndarray],
    test: tuple[np.ndarray, np.ndarray | None, np.ndarray],
) -> Choice:
    """`val` and `test` are each (the network's outputs, the baseline's or None, the truth): class probabilities
    and label indices, or values. Candidates without a baseline are dropped (images have none).

    With the blend listed, the blend at its bagged weight (blend.fit_weight) is registered: weight 1 or 0 is the
    network or the baseline alone. Its val score can sit below a single model's, as one split's best weight
    follows a few rows and the bagged one does not. Without the blend, the better val score wins."""
    network_val, baseline_val, val_truth = val
    network_test, baseline_test, test_truth = test
    if baseline_val is None:
        names = ["network"]
    weight = None
    if "blend" in names:
        weight = blend.fit_weight(network_val, baseline_val, val_truth, task, metric)
    candidates = []
    for name in sorted(dict.fromkeys(names), key=ORDER.index):
        shell = Candidate(name, weight if name == "blend" else None, {}, {})
        candidates.append(
            Candidate(
                name,
                shell.weight,
                task_metrics.compute(task, shell.outputs(network_val, baseline_val), val_truth),
                task_metrics.compute(task, shell.outputs(network_test, baseline_test), test_truth),
            )
        )
    if weight is not None:  # the blend is the bagged choice among every weight, the single models included
        winner = next(c for c in candidates if c.name == "blend")
        if weight in (0.0, 1.0):  # all of one model: register that one alone, at half the serving cost
            alone = "network" if weight == 1.0 else "baseline"
            winner = next((c for c in candidates if c.name == alone), winner)
    else:
        sign = 1.0 if task_metrics.mode_of(metric) == "max" else -1.0
        winner = max(candidates, key=lambda c: (sign * c.val[metric], -ORDER.index(c.name)))
    return Choice(winner, candidates, metric)
