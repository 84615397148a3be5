"""The honest baseline beside every winner: scikit-learn's gradient-boosted trees on the same splits.

HistGradientBoostingClassifier / HistGradientBoostingRegressor with their defaults take categories and missing
cells natively; they are fitted on the train split and scored on the test split the network is scored on, with
the same metrics, so the numbers compare. A user sees at once when the network loses to five lines of
scikit-learn.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

NAME = "gradient-boosted trees"


@dataclass(frozen=True)
class Baseline:
    metrics: dict[str, float]  # test_<name> for every metric of the task
    fit_s: float

    @property
    def test_accuracy(self) -> float | None:
        return self.metrics.get("test_accuracy")


def as_trees_see_it(frame: pd.DataFrame, types: dict[str, str], categories: dict[str, list[str]]) -> pd.DataFrame:
    """Numbers as floats (NaN stays missing); category and binary columns as pandas categoricals over the
    train split's values (an unseen value becomes missing)."""
    from pipelines.encoding import level

    out = {}
    for name, kind in types.items():
        if kind == "number":
            out[name] = pd.to_numeric(frame[name], errors="coerce").astype(np.float64)
        else:
            known = set(categories[name])
            out[name] = pd.Categorical([v if v in known else None for v in map(level, frame[name])],
                                       categories=categories[name])
    return pd.DataFrame(out, index=frame.index)


def fit_and_score(train: pd.DataFrame, train_y: np.ndarray, test: pd.DataFrame, test_y: np.ndarray,
                  types: dict[str, str], *, task: str = "classification", labels: list | None = None,
                  seed: int = 0) -> Baseline:
    """Fit on (train, train_y), score on (test, test_y). Classification: `labels` are the class values in the
    network's order, so both are scored over the same classes."""
    import time

    from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor

    from pipelines import metrics
    from pipelines.encoding import level, plain

    categories = {name: sorted({level(v) for v in train[name]} - {None}) for name, kind in types.items()
                  if kind != "number"}
    started = time.perf_counter()
    x_train, x_test = as_trees_see_it(train, types, categories), as_trees_see_it(test, types, categories)
    if task == metrics.REGRESSION:
        trees = HistGradientBoostingRegressor(categorical_features="from_dtype", random_state=seed)
        trees.fit(x_train, np.asarray(train_y, dtype=np.float64))
        scores = metrics.regression(trees.predict(x_test), np.asarray(test_y, dtype=np.float64))
        return Baseline(metrics.prefixed("test", scores), time.perf_counter() - started)
    labels = labels if labels is not None else sorted({plain(v) for v in train_y}, key=str)
    index = {label: i for i, label in enumerate(labels)}
    trees = HistGradientBoostingClassifier(categorical_features="from_dtype", random_state=seed)
    trees.fit(x_train, [index[plain(v)] for v in train_y])
    probabilities = np.zeros((len(test), len(labels)))
    probabilities[:, trees.classes_] = trees.predict_proba(x_test)
    scores = metrics.classification(probabilities, np.array([index[plain(v)] for v in test_y]))
    return Baseline(metrics.prefixed("test", scores), time.perf_counter() - started)
