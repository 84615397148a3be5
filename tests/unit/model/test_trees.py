"""The baseline's trees without a pickle: scikit-learn's HistGradientBoosting exported as arrays and predicted in
numpy give scikit-learn's own answers, on public data bundled with scikit-learn, with categorical columns, missing
cells and a category never seen in training; a file whose indices point outside itself is refused."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.datasets import load_breast_cancer, load_diabetes, load_wine
from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor

from pipelines.model import trees


def with_gaps_and_categories(x: np.ndarray, seed: int = 0) -> tuple[np.ndarray, list[bool]]:
    """Columns 1 and 3 binned into category values (7 and 3 levels, numbered from 10 by 5, so they are not the
    codes scikit-learn uses inside), 10% of all cells missing."""
    rng = np.random.default_rng(seed)
    x = x.astype(np.float64).copy()
    for column, levels in ((1, 7), (3, 3)):
        edges = np.quantile(x[:, column], np.linspace(0, 1, levels + 1)[1:-1])
        x[:, column] = 10 + 5 * np.digitize(x[:, column], edges)
    x[rng.random(x.shape) < 0.1] = np.nan
    return x, [column in (1, 3) for column in range(x.shape[1])]


@pytest.mark.parametrize("load", [load_breast_cancer, load_wine])
def test_a_classifiers_probabilities_round_trip_through_arrays(load, tmp_path):
    x, y = load(return_X_y=True)
    x, categorical = with_gaps_and_categories(x)
    fitted = HistGradientBoostingClassifier(categorical_features=categorical, random_state=0).fit(x[:-40], y[:-40])
    trees.save(tmp_path / "trees.npz", trees.export(fitted))
    loaded = trees.Trees.load(tmp_path / "trees.npz")

    held = x[-40:].copy()
    held[0, 1] = 15.0
    held[1, 3] = 12.0  # a value no training row had: scikit-learn sends it the missing way, and so do the arrays
    held[2, :] = np.nan
    assert np.allclose(loaded.predict_proba(held), fitted.predict_proba(held), atol=1e-9)
    assert np.allclose(loaded.predict_proba(held[:1]), fitted.predict_proba(held[:1]), atol=1e-9)  # one row
    assert loaded.arrays["classes"].tolist() == fitted.classes_.tolist()


def test_a_regressors_values_round_trip_through_arrays(tmp_path):
    x, y = load_diabetes(return_X_y=True)
    x, categorical = with_gaps_and_categories(x)
    fitted = HistGradientBoostingRegressor(categorical_features=categorical, random_state=0).fit(x[:-50], y[:-50])
    trees.save(tmp_path / "trees.npz", trees.export(fitted))
    assert np.allclose(trees.Trees.load(tmp_path / "trees.npz").predict(x[-50:]), fitted.predict(x[-50:]), atol=1e-9)


def test_a_file_whose_indices_point_outside_it_is_refused(tmp_path):
    x, y = load_wine(return_X_y=True)
    arrays = trees.export(HistGradientBoostingClassifier(max_iter=5).fit(x, y))
    arrays["left"][np.flatnonzero(~arrays["leaf"])[0]] = 10**9
    trees.save(tmp_path / "bad.npz", arrays)
    with pytest.raises(ValueError, match="left children point outside its nodes"):
        trees.Trees.load(tmp_path / "bad.npz")
    np.savez(tmp_path / "objects.npz", feature=np.array([{"a": 1}], dtype=object))
    with pytest.raises(ValueError, match="allow_pickle"):  # numpy will not unpickle an object array
        trees.Trees.load(tmp_path / "objects.npz")
