"""The honest baseline beside every winner: scikit-learn's gradient-boosted trees on the same splits.

HistGradientBoostingClassifier with its defaults takes categories and missing cells natively; it is fitted on
the train split and scored on the test split the network is scored on, so the two numbers compare. A user sees
at once when the network loses to five lines of scikit-learn.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

NAME = "gradient-boosted trees"


@dataclass(frozen=True)
class Baseline:
    test_accuracy: float
    fit_s: float


def as_trees_see_it(frame: pd.DataFrame, types: dict[str, str], categories: dict[str, list[str]]) -> pd.DataFrame:
    """Numbers as floats (NaN stays missing); category and binary columns as pandas categoricals over the
    train split's values (an unseen value becomes missing)."""
    from pipelines.encoding import level

    out = {}
    for name, kind in types.items():
        if kind == "number":
            out[name] = pd.to_numeric(frame[name], errors="coerce").astype(np.float64)
        else:
            out[name] = pd.Categorical([level(v) for v in frame[name]], categories=categories[name])
    return pd.DataFrame(out, index=frame.index)


def fit_and_score(train: pd.DataFrame, train_y: np.ndarray, test: pd.DataFrame, test_y: np.ndarray,
                  types: dict[str, str], *, seed: int = 0) -> Baseline:
    import time

    from sklearn.ensemble import HistGradientBoostingClassifier

    from pipelines.encoding import level

    categories = {name: sorted({level(v) for v in train[name]} - {None}) for name, kind in types.items()
                  if kind != "number"}
    started = time.perf_counter()
    trees = HistGradientBoostingClassifier(categorical_features="from_dtype", random_state=seed)
    trees.fit(as_trees_see_it(train, types, categories), [str(v) for v in train_y])
    predicted = trees.predict(as_trees_see_it(test, types, categories))
    accuracy = float(np.mean(predicted == np.array([str(v) for v in test_y])))
    return Baseline(accuracy, time.perf_counter() - started)
