"""The honest baseline beside every winner: scikit-learn on the same splits, scored with the same metrics.

A table: HistGradientBoostingClassifier / HistGradientBoostingRegressor with their defaults, which take
categories and missing cells natively. A table with text columns: TF-IDF of each text's words and word pairs
(1-2-grams), beside the other columns one-hot encoded or scaled, into a logistic regression (ridge for a
regression): what trees cannot read and what an ML engineer would try first. Fitted on the train split and scored
on the test split the network is scored on, so a user sees at once when the network loses to a few lines of
scikit-learn.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

NAME = "gradient-boosted trees"
TEXT_NAME = {"classification": "TF-IDF + logistic regression", "regression": "TF-IDF + ridge regression"}


NO_IMAGE_BASELINE = (
    "none: image columns have no cheap baseline that would be fair to show (trees or a linear "
    "model on raw pixels would understate what a small CNN should reach)"
)


@dataclass(frozen=True)
class Baseline:
    metrics: dict[str, float]  # test_<name> for every metric of the task
    fit_s: float
    name: str = NAME

    @property
    def test_accuracy(self) -> float | None:
        return self.metrics.get("test_accuracy")


def verdict(primary: str, network: float, baseline: Baseline | None) -> str | None:
    """One line when the baseline scored better than the network on the test split: by how much, and what to
    try; None when the network is at least as good (or there is no baseline)."""
    from pipelines import task_metrics

    theirs = baseline.metrics.get(primary) if baseline else None
    if theirs is None:
        return None
    higher = task_metrics.mode_of(primary) == "max"
    if (network >= theirs) if higher else (network <= theirs):
        return None
    by = f"{theirs - network:.4f}" if higher else f"{network / theirs:.3f}x"
    text = baseline.name != NAME
    advice = (
        "try model.text_encoder: transformer, more data.char_ngrams or a larger tune.num_samples"
        if text
        else "try a larger tune.num_samples and train.epochs, or keep the trees for this table"
    )
    return (
        f"the baseline wins: {baseline.name} {primary}={theirs:.4f} against the network's {network:.4f} "
        f"({'by ' + by if higher else by + ' the error'}); {advice}"
    )


def as_trees_see_it(frame: pd.DataFrame, types: dict[str, str], categories: dict[str, list[str]]) -> pd.DataFrame:
    """Numbers as floats (NaN stays missing); category and binary columns as pandas categoricals over the
    train split's values (an unseen value becomes missing)."""
    from pipelines.data.preprocessing import level

    out = {}
    for name, kind in types.items():
        if kind == "number":
            out[name] = pd.to_numeric(frame[name], errors="coerce").astype(np.float64)
        else:
            known = set(categories[name])
            out[name] = pd.Categorical(
                [v if v in known else None for v in map(level, frame[name])], categories=categories[name]
            )
    return pd.DataFrame(out, index=frame.index)


def fit_and_score(
    train: pd.DataFrame,
    train_y: np.ndarray,
    test: pd.DataFrame,
    test_y: np.ndarray,
    types: dict[str, str],
    *,
    task: str = "classification",
    labels: list | None = None,
    seed: int = 0,
) -> Baseline:
    """Fit on (train, train_y), score on (test, test_y). Classification: `labels` are the class values in the
    network's order, so both are scored over the same classes."""
    import time

    from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor

    from pipelines import task_metrics
    from pipelines.data.preprocessing import level, plain

    if "text" in types.values():
        return _fit_linear_on_text(train, train_y, test, test_y, types, task=task, labels=labels)
    categories = {
        name: sorted({level(v) for v in train[name]} - {None}) for name, kind in types.items() if kind != "number"
    }
    started = time.perf_counter()
    x_train, x_test = as_trees_see_it(train, types, categories), as_trees_see_it(test, types, categories)
    if task == task_metrics.REGRESSION:
        trees = HistGradientBoostingRegressor(categorical_features="from_dtype", random_state=seed)
        trees.fit(x_train, np.asarray(train_y, dtype=np.float64))
        scores = task_metrics.regression(trees.predict(x_test), np.asarray(test_y, dtype=np.float64))
        return Baseline(task_metrics.prefixed("test", scores), time.perf_counter() - started)
    labels = labels if labels is not None else sorted({plain(v) for v in train_y}, key=str)
    index = {label: i for i, label in enumerate(labels)}
    trees = HistGradientBoostingClassifier(categorical_features="from_dtype", random_state=seed)
    trees.fit(x_train, [index[plain(v)] for v in train_y])
    probabilities = np.zeros((len(test), len(labels)))
    probabilities[:, trees.classes_] = trees.predict_proba(x_test)
    scores = task_metrics.classification(probabilities, np.array([index[plain(v)] for v in test_y]))
    return Baseline(task_metrics.prefixed("test", scores), time.perf_counter() - started)


def _fit_linear_on_text(
    train: pd.DataFrame,
    train_y: np.ndarray,
    test: pd.DataFrame,
    test_y: np.ndarray,
    types: dict[str, str],
    *,
    task: str,
    labels: list | None,
) -> Baseline:
    import time

    from sklearn.linear_model import LogisticRegression, Ridge

    from pipelines import task_metrics
    from pipelines.data.preprocessing import plain

    started = time.perf_counter()
    columns = linear_columns(types)
    x_train, x_test = columns.fit_transform(as_text(train, types)), columns.transform(as_text(test, types))
    name = TEXT_NAME[task]
    if task == task_metrics.REGRESSION:
        model = Ridge().fit(x_train, np.asarray(train_y, dtype=np.float64))
        scores = task_metrics.regression(model.predict(x_test), np.asarray(test_y, dtype=np.float64))
        return Baseline(task_metrics.prefixed("test", scores), time.perf_counter() - started, name)
    labels = labels if labels is not None else sorted({plain(v) for v in train_y}, key=str)
    index = {label: i for i, label in enumerate(labels)}
    model = LogisticRegression(max_iter=2000).fit(x_train, [index[plain(v)] for v in train_y])
    probabilities = np.zeros((len(test), len(labels)))
    probabilities[:, model.classes_] = model.predict_proba(x_test)
    scores = task_metrics.classification(probabilities, np.array([index[plain(v)] for v in test_y]))
    return Baseline(task_metrics.prefixed("test", scores), time.perf_counter() - started, name)


def as_text(frame: pd.DataFrame, types: dict[str, str]) -> pd.DataFrame:
    """The columns as the linear baseline reads them: texts as strings (missing: empty), numbers as floats,
    categories as their level or "<missing>"."""
    from pipelines.data.preprocessing import level

    out = {}
    for name, kind in types.items():
        if kind == "text":
            out[name] = frame[name].fillna("").astype(str)
        elif kind == "number":
            out[name] = pd.to_numeric(frame[name], errors="coerce").astype(np.float64)
        else:
            out[name] = [level(v) or "<missing>" for v in frame[name]]
    return pd.DataFrame(out, index=frame.index)


def linear_columns(types: dict[str, str]):
    """The linear baseline's unfitted columns: TF-IDF of each text's words and word pairs, the numbers imputed
    and scaled, the categories one-hot (pipelines/model/linear_text.py keeps them fitted without a pickle)."""
    from sklearn.compose import ColumnTransformer
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    parts = [
        (f"tfidf_{name}", TfidfVectorizer(ngram_range=(1, 2), min_df=2, sublinear_tf=True), name)
        for name, kind in types.items()
        if kind == "text"
    ]
    numbers = [name for name, kind in types.items() if kind == "number"]
    others = [name for name, kind in types.items() if kind in ("category", "binary")]
    if numbers:
        parts.append(("numbers", make_pipeline(SimpleImputer(strategy="median"), StandardScaler()), numbers))
    if others:
        parts.append(("categories", OneHotEncoder(handle_unknown="ignore"), others))
    return ColumnTransformer(parts)
