"""Batch scoring's rows, without Ray: which input rows a version can score, its answers as columns, and the
one-line reason for each row it cannot. The endpoint's rules, applied to a table: a missing cell is imputed, an
unseen category is `other`, a number column's cell that is not a number and an image that does not decode each
fail their row only."""

from __future__ import annotations

import math
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from pandas.api.types import is_bool_dtype, is_numeric_dtype

from pipelines.data import images, text
from pipelines.errors import DataError

ROW = "row"  # the input's row number (0-based), in every output and error file
PREDICTION = "prediction"
ERROR = "error"
PATH = "path"  # an image folder's input: each file's name under the folder


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


def split_valid(
    frame: pd.DataFrame, types: dict[str, str], decoders: dict[str, Callable] | None = None
) -> tuple[pd.DataFrame, list[tuple[int, str]]]:
    """The rows every number column parses in and every image decodes in (number columns as floats, images as
    the pixels `decoders` gave), and (position, reason) for the rest."""
    errors: dict[int, str] = {}
    parsed_columns = {}
    for column, kind in types.items():
        if kind == "number":
            parse, dtype = number_cell, "float64"
        elif kind == "image" and decoders and column in decoders:
            parse, dtype = decoders[column], object
        else:
            continue
        values = frame[column]
        if kind == "number" and is_numeric_dtype(values) and not is_bool_dtype(values):  # parquet's, CSV's usual
            numbers = values.astype("float64")
            for i in np.flatnonzero(np.isinf(numbers.to_numpy())):
                errors.setdefault(int(i), f"column {column!r}: {str(values.iloc[i])[:60]!r} is not a number")
            parsed_columns[column] = numbers
            continue
        parsed = []
        for i, value in enumerate(values.tolist()):
            try:
                parsed.append(None if kind == "image" and text.is_missing(value) else parse(value))
            except ValueError as err:  # images.ImageError is a ValueError too
                reason = f"{str(value)[:60]!r} is not a number" if kind == "number" else str(err)
                errors.setdefault(i, f"column {column!r}: {reason}")
                parsed.append(None)
        parsed_columns[column] = pd.Series(parsed, index=frame.index, dtype=dtype)
    frame = frame.assign(**parsed_columns)
    good = np.ones(len(frame), dtype=bool)
    good[list(errors)] = False
    return frame.iloc[good], sorted(errors.items())


def image_decoders(preprocessing, folder: str | None) -> dict[str, Callable]:
    """Each image feature's cell to the pixels the model takes: image bytes, or a file name under `folder` (the
    input's own folder; None: a file name fails its row)."""
    return {
        e.name: partial(_pixels, e.size, e.channels, None if folder is None else Path(folder))
        for e in preprocessing.encoders
        if e.type == "image"
    }


def _pixels(size: int, channels: int, folder: Path | None, value) -> np.ndarray:
    if isinstance(value, str):
        if folder is None:
            raise images.ImageError("a file name, but the input is not in a local folder")
        value = str(images.file_under(folder, value))
    return images.pixels(value, size=size, channels=channels, allow_paths=True)


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


def score_frame(
    model, frame: pd.DataFrame, *, keep: list[str], probabilities: bool, folder: str | None = None
) -> pd.DataFrame:
    """Every input row once, in order: the kept columns, the answers, and `error` (empty when it scored). The
    caller adds the row numbers, which only it knows. Image file names are read under `folder`."""
    types = model.preprocessing.types
    decoders = image_decoders(model.preprocessing, folder)
    valid, errors = split_valid(frame, {f: types[f] for f in model.features}, decoders)
    scored = answers(model, valid, probabilities=probabilities)
    out = frame[keep].copy() if keep else pd.DataFrame(index=frame.index)
    out = out.join(scored)
    out[ERROR] = ""
    for position, reason in errors:
        out.iloc[position, out.columns.get_loc(ERROR)] = reason
    return out


def numbered(table, start: int):
    """A scored batch (a pyarrow Table, the actors' answers and `error`) numbered from `start` in input order, as
    (the scored rows: `row` first, then the rest; the failed rows: `row` and `error`). Arrow throughout: the
    driver never turns a batch into pandas."""
    import pyarrow as pa
    import pyarrow.compute as pc

    table = table.append_column(ROW, pa.array(range(start, start + table.num_rows), pa.int64()))
    failed = pc.not_equal(table[ERROR], "")
    good = table.filter(pc.invert(failed)).drop_columns([ERROR])
    return good.select([ROW, *[c for c in good.column_names if c != ROW]]), table.filter(failed).select([ROW, ERROR])
