"""The text baseline without a pickle: TF-IDF + a linear model kept as JSON and arrays answers as scikit-learn's
fitted pipeline does, on a table of text, a number with gaps and categories (an unseen level, a missing text and
a text of unseen words included); a file whose coefficients do not span its columns is refused."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression, Ridge

from pipelines.data import builtin
from pipelines.model import baseline, linear_text

TYPES = {"review": "text", "product": "category", "price": "number", "verified": "binary"}


def split():
    table = builtin.reviews(rows=600, seed=3)
    train, held = table.iloc[:500].copy(), table.iloc[500:].copy()
    held.iloc[0, held.columns.get_loc("product")] = "a product nobody sold"
    held.iloc[1, held.columns.get_loc("review")] = None
    held.iloc[2, held.columns.get_loc("review")] = "Zyxxq qwvv!"
    held.iloc[3, held.columns.get_loc("price")] = np.nan
    return train, held


@pytest.mark.parametrize("task", ["binary", "multiclass", "regression"])
def test_the_kept_linear_baseline_answers_as_scikit_learns(task, tmp_path):
    train, held = split()
    types = {k: v for k, v in TYPES.items() if not (task == "multiclass" and k == "product")}
    columns = baseline.linear_columns(types)
    x = columns.fit_transform(baseline.as_text(train, types))
    if task == "binary":
        model = LogisticRegression(max_iter=2000).fit(x, train["sentiment"].map({"negative": 0, "positive": 1}))
    elif task == "multiclass":
        model = LogisticRegression(max_iter=2000).fit(x, train["product"].astype("category").cat.codes)
        assert len(model.classes_) > 2
    else:
        model = Ridge().fit(x, train["price"].fillna(0) + train["review"].fillna("").str.len())
    linear_text.save(tmp_path / "baseline", *linear_text.export(columns, model, types))
    loaded = linear_text.Linear.load(tmp_path / "baseline")

    theirs = columns.transform(baseline.as_text(held, types))
    if task != "regression":
        assert np.allclose(loaded.predict_proba(held), model.predict_proba(theirs), atol=1e-9)
    else:
        assert np.allclose(loaded.predict(held), model.predict(theirs), atol=1e-9)


def test_coefficients_that_do_not_span_the_columns_are_refused(tmp_path):
    train, _ = split()
    columns = baseline.linear_columns(TYPES)
    model = Ridge().fit(columns.fit_transform(baseline.as_text(train, TYPES)), train["price"].fillna(0))
    layout, arrays = linear_text.export(columns, model, TYPES)
    arrays["coef"] = arrays["coef"][:, :-3]
    linear_text.save(tmp_path / "baseline", layout, arrays)
    with pytest.raises(ValueError, match="coefficients span"):
        linear_text.Linear.load(tmp_path / "baseline")
