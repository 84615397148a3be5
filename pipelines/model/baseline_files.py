"""The baseline as a version keeps it (baseline.Fitted.save): `baseline.json` says what it is, beside the trees'
arrays (trees.npz) or the linear model's (linear.json, linear.npz). Loading reads JSON and numpy arrays with
`allow_pickle=False`, checks that they agree, and answers raw rows with numpy (and scikit-learn's compiled tree
walk, fed the checked arrays): no pickle, no code from the file."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

FORMAT = 1
LAYOUT = "baseline.json"
KINDS = ("trees", "linear")


def tree_matrix(frame: pd.DataFrame, types: dict[str, str], categories: dict[str, list[str]]) -> np.ndarray:
    """The matrix the trees read: numbers as floats (NaN stays missing); a category or binary column as its
    value's index among the train split's values (an unseen value: NaN, missing)."""
    from pipelines.data.preprocessing import as_numbers, coded_levels

    out = np.empty((len(frame), len(types)), dtype=np.float64)
    for j, (name, kind) in enumerate(types.items()):
        if kind == "number":
            out[:, j] = as_numbers(frame[name])
        else:
            index = {v: i for i, v in enumerate(categories[name])}
            codes, names = coded_levels(frame[name])
            out[:, j] = np.array([index.get(n, np.nan) for n in names])[codes]  # missing: the last name, None
    return out


def write_layout(folder: Path, **layout) -> None:
    (folder / LAYOUT).write_text(json.dumps({"format": FORMAT, **layout}, indent=1))


@dataclass(frozen=True)
class Kept:
    layout: dict
    model: object  # trees.Trees or linear_text.Linear

    @property
    def name(self) -> str:
        return self.layout["name"]

    def outputs(self, frame: pd.DataFrame) -> np.ndarray:
        """As baseline.Fitted.outputs: class probabilities [N, labels] or values [N]."""
        layout = self.layout
        x = frame if layout["kind"] == "linear" else tree_matrix(frame, layout["types"], layout["categories"])
        if layout["labels"] is None:
            return self.model.predict(x)
        return over_labels(self.model.predict_proba(x), classes_of(layout["kind"], self.model), layout["labels"])


def over_labels(probabilities: np.ndarray, classes, labels: int) -> np.ndarray:
    """A classifier's [rows, its classes] probabilities placed over all `labels` (a class the train split lacked
    gets 0)."""
    out = np.zeros((len(probabilities), labels))
    out[:, classes] = probabilities
    return out


def classes_of(kind: str, model) -> np.ndarray:
    """The label indices a classifier's outputs are for (the train split may lack a class)."""
    return np.asarray(model.arrays["classes"] if kind == "trees" else model.layout["classes"] or [], dtype=np.int64)


def load(folder: Path) -> Kept:
    """The kept baseline in `folder`; ValueError naming what is wrong with a file that does not add up."""
    from pipelines.model import linear_text, trees

    layout = json.loads((folder / LAYOUT).read_text())
    if layout.get("format") != FORMAT or layout.get("kind") not in KINDS:
        raise ValueError(f"{folder / LAYOUT}: not a baseline Kiln wrote (format {layout.get('format')})")
    if not isinstance(layout.get("types"), dict):
        raise ValueError(f"{folder / LAYOUT}: no column types")
    model = trees.Trees.load(folder / "trees.npz") if layout["kind"] == "trees" else linear_text.Linear.load(folder)
    labels = layout.get("labels")
    classes = classes_of(layout["kind"], model)
    if labels is not None and (len(classes) == 0 or classes.min() < 0 or classes.max() >= labels):
        raise ValueError(f"{folder / LAYOUT}: its classes do not fit its {labels} labels")
    if layout["kind"] == "trees" and len(model.arrays["feature_map"]) != len(layout["types"]):
        columns = len(model.arrays["feature_map"])
        raise ValueError(f"{folder / LAYOUT}: the trees read {columns} columns, not {len(layout['types'])}")
    return Kept(layout, model)
