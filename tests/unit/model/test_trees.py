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


def test_the_compiled_walk_and_the_numpy_walk_agree_with_scikit_learn_on_any_batch_size():
    """A batch goes through scikit-learn's compiled walk rebuilt from the arrays, a few rows through numpy: both
    answer as the fitted model, with missing cells, categories and an unseen value, on one thread and on many."""
    x, y = load_wine(return_X_y=True)
    x, categorical = with_gaps_and_categories(np.tile(x, (30, 1)), seed=1)
    y = np.tile(y, 30)
    fitted = HistGradientBoostingClassifier(categorical_features=categorical, random_state=0).fit(x[:-3000], y[:-3000])
    loaded = trees.Trees(trees.export(fitted))
    held = x[-3000:].copy()
    held[0, 1] = 12.0  # unseen
    assert loaded.compiled is not None
    expected = fitted._raw_predict(held)
    encoded = loaded.encoded(held)
    assert np.allclose(loaded.compiled_raw(encoded), expected, atol=1e-9)  # 3,000 rows: every thread
    assert np.allclose(loaded.walked_raw(encoded), expected, atol=1e-9)
    for rows in (1, trees.COMPILED_FROM_ROWS - 1, trees.COMPILED_FROM_ROWS, 500):
        assert np.allclose(loaded.raw(held[:rows]), expected[:rows], atol=1e-9), rows


@pytest.mark.parametrize(
    "tamper, message",
    [
        (lambda a, inner: a["left"].__setitem__(inner[0], inner[0]), "left children point outside"),  # a loop
        (lambda a, inner: a["right"].__setitem__(inner[1], a["roots"][1]), "right children point outside"),
        (lambda a, inner: a.__setitem__("left", a["left"].astype(np.float64)), "not whole numbers"),
        (lambda a, inner: a.__setitem__("roots", a["roots"][::-1].copy()), "roots point outside"),
    ],
)
def test_a_file_whose_walk_would_loop_or_leave_its_tree_is_refused(tamper, message, tmp_path):
    """The compiled walk reads without bounds checks and stops only at a leaf, so a child must lie inside its
    own tree and after its parent."""
    x, y = load_wine(return_X_y=True)
    arrays = trees.export(HistGradientBoostingClassifier(max_iter=5).fit(x, y))
    tamper(arrays, np.flatnonzero(~arrays["leaf"]))
    trees.save(tmp_path / "bad.npz", arrays)
    with pytest.raises(ValueError, match=message):
        trees.Trees.load(tmp_path / "bad.npz")


def test_a_category_split_whose_bitset_is_outside_the_file_is_refused(tmp_path):
    x, y = load_wine(return_X_y=True)
    x, categorical = with_gaps_and_categories(x)
    arrays = trees.export(HistGradientBoostingClassifier(categorical_features=categorical, max_iter=5).fit(x, y))
    split = np.flatnonzero(arrays["categorical"] & ~arrays["leaf"])
    assert len(split)
    arrays["bitset"][split[0]] = len(arrays["left_bitsets"])
    trees.save(tmp_path / "bad.npz", arrays)
    with pytest.raises(ValueError, match="category splits point outside its bitsets"):
        trees.Trees.load(tmp_path / "bad.npz")
