"""The task: classification or regression, from `data.task` or, when it says auto, from the label's values.

The rule for auto (labels that are present):
  bool, strings, or anything not a number                      -> classification
  numbers with a fractional part                                -> regression
  whole numbers with more than REGRESSION_MIN_DISTINCT values   -> regression (a count, a price in cents)
  otherwise (a few whole numbers: digits, a 1-5 grade)          -> classification
The task's config is then decided once (KilnConfig.for_task), before anything starts.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from pipelines import task_metrics
from pipelines.config import DataConfig, KilnConfig
from pipelines.errors import ConfigError, DataError

REGRESSION_MIN_DISTINCT = 20


def is_number_column(values: pd.Series) -> bool:
    """Numbers, bool excluded, whatever the dtype (a column of ints with None cells is `object`)."""
    if pd.api.types.is_bool_dtype(values):
        return False
    return pd.api.types.is_numeric_dtype(values) or pd.api.types.infer_dtype(values, skipna=True) in (
        "integer",
        "floating",
        "mixed-integer-float",
        "decimal",
    )


def infer(labels: pd.Series) -> tuple[str, str]:
    """(task, why) for a label column by the rule above."""
    present = labels.dropna()
    if not is_number_column(present):
        return task_metrics.CLASSIFICATION, "its values are not numbers"
    numbers = present.to_numpy(dtype=np.float64)
    distinct = present.nunique()
    if not np.all(np.mod(numbers, 1) == 0):
        return task_metrics.REGRESSION, f"numbers with fractions ({distinct} distinct values)"
    if distinct > REGRESSION_MIN_DISTINCT:
        return task_metrics.REGRESSION, f"{distinct} distinct whole numbers (over {REGRESSION_MIN_DISTINCT})"
    return task_metrics.CLASSIFICATION, f"{distinct} distinct whole numbers (at most {REGRESSION_MIN_DISTINCT})"


def decide(labels: pd.Series, cfg: DataConfig) -> tuple[str, str | None]:
    """(task, a note saying why when Kiln picked it); raises DataError when the label cannot serve the task."""
    task, why = (cfg.task, None) if cfg.task != "auto" else infer(labels)
    check_label(labels.dropna(), task, cfg)
    note = f"note: task {task} (data.task: auto; label {cfg.label!r}: {why})" if why else None
    return task, note


def check_label(labels: pd.Series, task: str, cfg: DataConfig) -> None:
    distinct = labels.nunique()
    if task == task_metrics.REGRESSION:
        if not is_number_column(labels):
            bad = next((v for v in labels if not _is_number(v)), labels.iloc[0] if len(labels) else None)
            raise DataError(
                f"data.task: regression, but label {cfg.label!r} holds {bad!r}, not a number; "
                "use data.task: classification"
            )
        if distinct < 2:
            raise DataError(
                f"data.label: column {cfg.label!r} has {distinct} distinct value"
                f"{'s' if distinct != 1 else ''} among the labelled rows; nothing to predict"
            )
        return
    if distinct > cfg.max_classes:
        raise DataError(
            f"data.label: column {cfg.label!r} has {distinct} distinct values, more than "
            f"data.max_classes={cfg.max_classes}: a number to predict, not classes; "
            "set data.task: regression"
        )


def _is_number(value) -> bool:
    try:
        float(value)
    except (TypeError, ValueError):
        return False
    return not isinstance(value, bool | str)


def resolve(cfg: KilnConfig, labels: pd.Series) -> tuple[KilnConfig, str | None]:
    """The config with its task decided from the label column, and the note saying why (auto only)."""
    task, note = decide(labels, cfg.data)
    try:
        return cfg.for_task(task), note
    except ValueError as err:
        raise ConfigError(str(err)) from None
