"""Batch scoring's rows, without Ray: which input rows a version can score, its answers as columns, and the
one-line reason for each row it cannot. The endpoint's rules, applied to a table: a missing cell is imputed, an
unseen category is `other`, a number column's cell that is not a number fails its row only."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

from pipelines.errors import DataError

ROW = "row"  # the input's row number (0-based), in every output and error file
PREDICTION = "prediction"
ERROR = "error"


def check_columns(columns: list[str], features: list[str], keep: list[str], where: str) -> None:
    """Before anything starts: every feature and every kept column is in the input (`where` names it)."""
    missing = [f for f in features if f not in columns]
    if missing:
        raise DataError(f"{where}: no column {missing[0]!r}, a feature of this model (it has {', '.join(columns)})")
    absent = [k for k in keep if k not in columns]
    if absent:
        raise DataError(f"score.keep: {absent[0]!r} is not a column of {where}")
    if ROW in keep or PREDICTION in keep:
        raise DataError(f"score.keep: {ROW!r} and {PREDICTION!r} are the scorer's own columns")


def number_cell(value: Any) -> float | None:
    """A number column's cell as a float, None when missing; ValueError when it is not a number."""
    if value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value)):
        return None
    if isinstance(value, bool):
        raise ValueError(f"{value!r} is not a number")
    if isinstance(value, int | float | np.integer | np.floating):
        number = float(value)
    else:
        text = str(value).strip()
        if not text:
            return None
        number = float(text)  # ValueError names the text
    if not math.isfinite(number):
        raise ValueError(f"{value!r} is not a finite number")
    return number


def split_valid(frame: pd.DataFrame, types: dict[str, str]) -> tuple[pd.DataFrame, list[tuple[int, str]]]:
    """The rows every number column parses in (number columns as floats), and (position, reason) for the rest."""
    errors: dict[int, str] = {}
    numbers = {}
    for column, kind in types.items():
        if kind != "number":
            continue
        parsed = []
        for i, value in enumerate(frame[column].tolist()):
            try:
                parsed.append(number_cell(value))
            except ValueError:
                errors.setdefault(i, f"column {column!r}: {str(value)[:60]!r} is not a number")
                parsed.append(None)
        numbers[column] = pd.Series(parsed, index=frame.index, dtype="float64")
    frame = frame.assign(**numbers)
    good = [i for i in range(len(frame)) if i not in errors]
    return frame.iloc[good], sorted(errors.items())


def answers(model, frame: pd.DataFrame, *, probabilities: bool) -> pd.DataFrame:
    """The version's answers for `frame`'s rows: `prediction`, and with `probabilities` a classifier's
    `probability_<label>` per label."""
    if frame.empty:
        return pd.DataFrame({PREDICTION: []})
    outputs = model.outputs(frame[model.features])
    columns: dict[str, Any] = {PREDICTION: model.decode(outputs)}
    if probabilities and not model.preprocessing.regression:
        for k, label in enumerate(model.preprocessing.labels):
            columns[f"probability_{label}"] = outputs[:, k].astype("float64")
    return pd.DataFrame(columns, index=frame.index)


def score_frame(model, frame: pd.DataFrame, *, keep: list[str], probabilities: bool) -> pd.DataFrame:
    """Every input row once, in order: the kept columns, the answers, and `error` (empty when it scored). The
    caller adds the row numbers, which only it knows."""
    types = model.preprocessing.types
    valid, errors = split_valid(frame, {f: types[f] for f in model.features})
    scored = answers(model, valid, probabilities=probabilities)
    out = frame[keep].copy() if keep else pd.DataFrame(index=frame.index)
    out = out.join(scored)
    out[ERROR] = ""
    for position, reason in errors:
        out.iloc[position, out.columns.get_loc(ERROR)] = reason
    return out
