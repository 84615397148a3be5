"""The baseline kept as a version would keep it: saved by the fitted baseline, loaded with numpy alone, and
answering as the fitted one does, on scikit-learn's breast cancer table (public), generated tables with string
categories, gaps and an unseen value, a regression and a text table; a layout that does not add up is refused."""

from __future__ import annotations

import json

import numpy as np
import pytest

from pipelines.config import DataConfig
from pipelines.data import builtin, sources
from pipelines.model import baseline, baseline_files


def table(name: str):
    if name == "breast_cancer":
        from sklearn.datasets import load_breast_cancer

        frame = load_breast_cancer(as_frame=True).frame
        return frame.rename(columns={"target": "label"}), "label"
    if name == "customers":
        return builtin.customers(rows=900, seed=4), "churned"
    if name == "houses":
        return builtin.houses(rows=900, seed=4), "price"
    return builtin.reviews(rows=900, seed=4), "sentiment"


@pytest.mark.parametrize("name", ["breast_cancer", "customers", "houses", "reviews"])
def test_the_kept_baseline_answers_as_the_fitted_one(name, tmp_path):
    frame, label = table(name)
    checked = sources.check_frame(frame, DataConfig(label=label))
    cut = int(0.75 * len(checked.frame))
    train, held = checked.frame.iloc[:cut], checked.frame.iloc[cut:].copy()
    categories = [c for c, kind in checked.types.items() if kind == "category"]
    if categories:
        held.loc[held.index[:3], categories[0]] = "a value never seen"
    fitted = baseline.fit(train[checked.features], train[label].to_numpy(), checked.types, task=checked.task)
    fitted.save(tmp_path / "baseline")
    kept = baseline_files.load(tmp_path / "baseline")
    assert kept.name == fitted.name
    assert np.allclose(kept.outputs(held[checked.features]), fitted.outputs(held[checked.features]), atol=1e-9)
    assert not list((tmp_path / "baseline").glob("*.pkl"))


def test_a_layout_that_does_not_match_its_arrays_is_refused(tmp_path):
    frame, label = table("customers")
    checked = sources.check_frame(frame, DataConfig(label=label))
    baseline.fit(checked.frame[checked.features], checked.frame[label].to_numpy(), checked.types).save(tmp_path)
    layout = json.loads((tmp_path / "baseline.json").read_text())
    (tmp_path / "baseline.json").write_text(json.dumps({**layout, "types": {"only": "number"}}))
    with pytest.raises(ValueError, match="the trees read 5 columns, not 1"):
        baseline_files.load(tmp_path)
    (tmp_path / "baseline.json").write_text(json.dumps({**layout, "kind": "pickle"}))
    with pytest.raises(ValueError, match="not a baseline Kiln wrote"):
        baseline_files.load(tmp_path)
