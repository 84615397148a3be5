"""The honest baseline beside every winner: scikit-learn on the same splits, scored with the same metrics.

A table: HistGradientBoostingClassifier / HistGradientBoostingRegressor with their defaults, which take
categories and missing cells natively. A table with text columns: TF-IDF of each text's words and word pairs
(1-2-grams), beside the other columns one-hot encoded or scaled, into a logistic regression (ridge for a
regression): what trees cannot read and what an ML engineer would try first. Fitted on the train split and scored
on the test split the network is scored on, so a user sees at once when the network loses to a few lines of
scikit-learn.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from pipelines.model import baseline_files

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
    fitted: Fitted | None = field(default=None, compare=False, repr=False)  # what registry.candidates may keep

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


@dataclass
class Fitted:
    """The baseline fitted in this process (scikit-learn): its outputs for raw rows, and `save`, which keeps it
    as JSON and arrays (pipelines/model/baseline_files.py loads it without scikit-learn or a pickle)."""

    name: str
    task: str
    types: dict[str, str]
    labels: list | None  # classification: the class values, in the network's order
    model: object
    fit_s: float
    categories: dict[str, list[str]] | None = None  # trees: each category column's train values
    columns: object = None  # linear: the fitted ColumnTransformer

    def outputs(self, frame: pd.DataFrame) -> np.ndarray:
        """Class probabilities [N, len(labels)] (a class the train split lacked: 0), or values [N]."""
        if self.columns is not None:
            x = self.columns.transform(as_text(frame, self.types))
        else:
            x = baseline_files.tree_matrix(frame, self.types, self.categories)
        if self.labels is None:
            return self.model.predict(x)
        return baseline_files.over_labels(self.model.predict_proba(x), self.model.classes_, len(self.labels))

    def scored(self, test: pd.DataFrame, test_y: np.ndarray) -> Baseline:
        """Its test metrics, as the network's are scored, carrying itself along."""
        from pipelines import task_metrics
        from pipelines.data.preprocessing import plain

        outputs = self.outputs(test)
        if self.labels is None:
            scores = task_metrics.regression(outputs, np.asarray(test_y, dtype=np.float64))
        else:
            index = {label: i for i, label in enumerate(self.labels)}
            scores = task_metrics.classification(outputs, np.array([index[plain(v)] for v in test_y]))
        return Baseline(task_metrics.prefixed("test", scores), self.fit_s, self.name, self)

    def save(self, folder: Path) -> None:
        from pipelines.model import linear_text, trees

        folder.mkdir(parents=True, exist_ok=True)
        if self.columns is not None:
            linear_text.save(folder, *linear_text.export(self.columns, self.model, self.types))
            kind = "linear"
        else:
            trees.save(folder / "trees.npz", trees.export(self.model))
            kind = "trees"
        baseline_files.write_layout(
            folder,
            kind=kind,
            name=self.name,
            task=self.task,
            types=self.types,
            labels=None if self.labels is None else len(self.labels),
            categories=self.categories,
        )


def fit(
    train: pd.DataFrame,
    train_y: np.ndarray,
    types: dict[str, str],
    *,
    task: str = "classification",
    labels: list | None = None,
    seed: int = 0,
) -> Fitted:
    """The baseline fitted on (train, train_y): trees, or with text columns TF-IDF and a linear model.
    Classification: `labels` are the class values in the network's order (default: those of train_y)."""
    import time

    from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor
    from sklearn.linear_model import LogisticRegression, Ridge

    from pipelines import task_metrics
    from pipelines.data.preprocessing import level, plain

    started = time.perf_counter()
    regression = task == task_metrics.REGRESSION
    if not regression:
        labels = labels if labels is not None else sorted({plain(v) for v in train_y}, key=str)
        index = {label: i for i, label in enumerate(labels)}
        target = np.array([index[plain(v)] for v in train_y])
    else:
        labels, target = None, np.asarray(train_y, dtype=np.float64)
    if "text" in types.values():
        columns = linear_columns(types)
        x = columns.fit_transform(as_text(train, types))
        model = Ridge() if regression else LogisticRegression(max_iter=2000)
        model.fit(x, target)
        return Fitted(TEXT_NAME[task], task, types, labels, model, time.perf_counter() - started, columns=columns)
    categories = {
        name: sorted({level(v) for v in train[name]} - {None}) for name, kind in types.items() if kind != "number"
    }
    mask = [kind != "number" for kind in types.values()]
    trees = (HistGradientBoostingRegressor if regression else HistGradientBoostingClassifier)(
        categorical_features=mask if any(mask) else None, random_state=seed
    )
    trees.fit(baseline_files.tree_matrix(train, types, categories), target)
    return Fitted(NAME, task, types, labels, trees, time.perf_counter() - started, categories=categories)


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
    return fit(train, train_y, types, task=task, labels=labels, seed=seed).scored(test, test_y)


def as_text(frame: pd.DataFrame, types: dict[str, str]) -> pd.DataFrame:
    """The columns as the linear baseline reads them: texts as strings (missing: empty), numbers as floats,
    categories as their level or "<missing>"."""
    from pipelines.data.preprocessing import level
    from pipelines.model import linear_text

    out = {}
    for name, kind in types.items():
        if kind == "text":
            out[name] = frame[name].fillna("").astype(str)
        elif kind == "number":
            out[name] = pd.to_numeric(frame[name], errors="coerce").astype(np.float64)
        else:
            out[name] = [level(v) or linear_text.MISSING_LEVEL for v in frame[name]]
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
