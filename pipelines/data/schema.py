"""Column types: what each column of a table is, inferred from its values unless `data.types` says.

The rule, in order, for a column that `data.types` does not name:
  1. every cell missing                            -> dropped, with a note
  2. bool, or exactly two distinct values          -> binary
  3. numbers:
     the row index (integers 0..N-1 or 1..N in file order, as R and pandas write it) -> excluded, with a note
     otherwise                                      -> number
  4. strings: free-form text (a mean length over 30 characters, mostly distinct, at least 20 cells) -> text
     a distinct value on nearly every row (>= 95% of at least 20 non-missing cells) -> an identifier,
     excluded with a note; otherwise               -> category
`data.drop` excludes columns outright; `data.features`, when set, limits the features to those named.
Pure pandas: `kiln validate` prints the result as a table before anything starts.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from pipelines import console
from pipelines.config import COLUMN_TYPES, DataConfig
from pipelines.data import images, text
from pipelines.errors import DataError

IDENTIFIER_SHARE = 0.95
IDENTIFIER_MIN_ROWS = 20


@dataclass(frozen=True)
class Column:
    name: str
    type: str | None  # number | category | binary | text; None: not used
    missing: int
    distinct: int
    use: str  # what Kiln does with it, in words

    @property
    def is_feature(self) -> bool:
        return self.type is not None and self.use == "feature"


def infer_type(values: pd.Series) -> tuple[str | None, str]:
    """(type, use) of one column by the rule above."""
    present = values.dropna()
    if present.empty:
        return None, "dropped: every cell is missing"
    if not pd.api.types.is_numeric_dtype(values) and all(images.is_image_cell(v) for v in present):
        return "image", "feature"
    distinct = present.nunique()
    if pd.api.types.is_bool_dtype(values) or distinct == 2:
        return "binary", "feature"
    if pd.api.types.is_numeric_dtype(values):
        if is_row_index(values):
            return None, "excluded: the row index (it would leak the file's order)"
        return "number", "feature"
    if text.looks_like_text(present):
        return "text", "feature"
    if len(present) >= IDENTIFIER_MIN_ROWS and distinct >= IDENTIFIER_SHARE * len(present):
        return None, f"excluded: an identifier ({distinct} distinct values in {len(present)} rows)"
    return "category", "feature"


IDENTIFYING = ("excluded: an identifier", "excluded: the row index", "excluded: data.drop")


def identifiers(columns: list[Column]) -> list[str]:
    """The columns left out as identifying a row rather than describing it (inferred, the row index, data.drop)."""
    return [c.name for c in columns if c.use.startswith(IDENTIFYING)]


def is_row_index(values: pd.Series) -> bool:
    """Integers 0..N-1 or 1..N in file order, with nothing missing."""
    if values.isna().any() or not pd.api.types.is_numeric_dtype(values) or len(values) < 2:
        return False
    numbers = values.to_numpy(dtype=np.float64)
    if not np.all(numbers == np.round(numbers)):
        return False
    steps = np.arange(len(values), dtype=np.float64)
    return bool(np.array_equal(numbers, steps) or np.array_equal(numbers, steps + 1))


def infer(frame: pd.DataFrame, cfg: DataConfig) -> list[Column]:
    """Every column of `frame` with its type and use; raises DataError naming a bad data.* entry."""
    columns = [str(c) for c in frame.columns]
    if cfg.label not in columns:
        raise DataError(
            f"data.label: column {cfg.label!r} not in data (columns: "
            + ", ".join(columns[:8])
            + ("..." if len(columns) > 8 else "")
            + ")"
        )
    for key, named in (("data.types", list(cfg.types)), ("data.drop", cfg.drop), ("data.features", cfg.features or [])):
        absent = [c for c in named if c not in columns]
        if absent:
            raise DataError(f"{key}: column {absent[0]!r} not in data")
    if cfg.label in cfg.drop or (cfg.features and cfg.label in cfg.features):
        where = "data.drop" if cfg.label in cfg.drop else "data.features"
        raise DataError(f"{where}: the label column {cfg.label!r} cannot be dropped or used as a feature")
    found = []
    for name in columns:
        values = frame[name]
        missing, distinct = int(values.isna().sum()), int(values.nunique())
        if name == cfg.label:
            found.append(Column(name, None, missing, distinct, "label"))
        elif name in cfg.drop:
            found.append(Column(name, None, missing, distinct, "excluded: data.drop"))
        elif cfg.features is not None and name not in cfg.features:
            found.append(Column(name, None, missing, distinct, "excluded: not in data.features"))
        elif name in cfg.types:
            found.append(Column(name, checked_override(values, name, cfg.types[name]), missing, distinct, "feature"))
        else:
            kind, use = infer_type(values)
            found.append(Column(name, kind, missing, distinct, use))
    if not any(c.is_feature for c in found):
        raise DataError("data: no feature columns left besides the label (see data.drop, data.features)")
    if cfg.features is not None:  # the user's order
        order = {name: i for i, name in enumerate(cfg.features)}
        found.sort(key=lambda c: order.get(c.name, -1))
    return found


def checked_override(values: pd.Series, name: str, kind: str) -> str:
    """A `data.types` entry the column's values can satisfy."""
    if kind not in COLUMN_TYPES:
        raise DataError(f"data.types.{name}: unknown type {kind!r}; use one of {', '.join(COLUMN_TYPES)}")
    if kind == "number" and not pd.api.types.is_numeric_dtype(values):
        bad = next(v for v in values.dropna() if not _is_number(v))
        raise DataError(f"data.types.{name}: number, but the column holds {bad!r}")
    if kind == "image":
        bad = next((v for v in values.dropna() if not images.is_image_cell(v)), None)
        if bad is not None:
            raise DataError(
                f"data.types.{name}: image, but the column holds {str(bad)[:60]!r} (image bytes, or "
                f"a file name ending {', '.join(images.SUFFIXES)})"
            )
    if kind == "binary" and values.dropna().nunique() > 2:
        raise DataError(f"data.types.{name}: binary, but the column has {values.dropna().nunique()} distinct values")
    return kind


def _is_number(value) -> bool:
    try:
        float(value)
    except (TypeError, ValueError):
        return False
    return True


def table(columns: list[Column]) -> str:
    """The schema as `kiln validate` prints it."""
    rows = [[c.name, c.type or "-", str(c.missing), str(c.distinct), c.use] for c in columns]
    return console.table(["column", "type", "missing", "distinct", "use"], rows)
