"""Data: sources, checks, a deterministic stratified split and preprocessing statistics.

Everything here is plain pandas/numpy so it is testable without Ray; `ingest.py` binds it to Ray Data.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from pipelines.config import DataConfig, SplitConfig
from pipelines.errors import DataError, one_line

BUILTIN_PREFIX = "builtin:"
BUILTINS = ("digits",)


@dataclass(frozen=True)
class Source:
    paths: list[str]  # files, or one URI that the reader expands
    format: str  # parquet | csv


@dataclass(frozen=True)
class Preprocessing:
    """What travels with the model: feature order, standardisation statistics, label values."""

    features: list[str]
    mean: list[float]
    std: list[float]
    labels: list[Any]

    def to_dict(self) -> dict[str, Any]:
        return {"features": self.features, "mean": self.mean, "std": self.std, "labels": self.labels}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Preprocessing:
        return cls(d["features"], d["mean"], d["std"], d["labels"])

    def transform(self, x: np.ndarray) -> np.ndarray:
        return ((x - np.asarray(self.mean)) / np.asarray(self.std)).astype(np.float32)

    def encode(self, labels: pd.Series) -> np.ndarray:
        index = {label: i for i, label in enumerate(self.labels)}
        return np.array([index[plain(v)] for v in labels], dtype=np.int64)


# --- sources ---------------------------------------------------------------------------------


def resolve_source(cfg: DataConfig, storage_root: Path) -> Source:
    """Turn `data.source` into files to read; builtin sets are written once as parquet."""
    source = cfg.source
    if source.startswith(BUILTIN_PREFIX):
        name = source.removeprefix(BUILTIN_PREFIX)
        if name not in BUILTINS:
            raise DataError(f"data.source: unknown builtin {source!r}; choose one of "
                            + ", ".join(BUILTIN_PREFIX + b for b in BUILTINS))
        return Source([str(write_builtin(name, storage_root / "datasets"))], "parquet")
    if "://" in source and not source.startswith("file://"):
        return Source([source], _format_of(source))
    path = Path(source.removeprefix("file://")).expanduser().resolve()
    if not path.exists():
        raise DataError(f"data.source: {source} not found")
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.suffix.lower() in (".parquet", ".pq", ".csv"))
        if not files:
            raise DataError(f"data.source: no .parquet or .csv files in {source}")
        formats = {_format_of(str(p)) for p in files}
        if len(formats) > 1:
            raise DataError(f"data.source: {source} mixes parquet and CSV files; keep one format")
        return Source([str(p) for p in files], formats.pop())
    return Source([str(path)], _format_of(str(path)))


def _format_of(path: str) -> str:
    suffix = Path(path.rstrip("/")).suffix.lower()
    if suffix in (".parquet", ".pq", ""):
        return "parquet"
    if suffix == ".csv":
        return "csv"
    raise DataError(f"data.source: {path} is neither parquet nor CSV")


def write_builtin(name: str, folder: Path) -> Path:
    """scikit-learn's bundled digits as a real parquet file (written once, atomically)."""
    path = folder / f"{name}.parquet"
    if path.exists():
        return path
    from sklearn.datasets import load_digits

    frame = load_digits(as_frame=True).frame.rename(columns={"target": "label"})
    folder.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    frame.to_parquet(tmp, index=False)
    tmp.replace(path)
    return path


def read_local(source: Source) -> pd.DataFrame:
    """Read a source without Ray (validation, small tools)."""
    import pyarrow.dataset as pads

    try:
        if source.format == "csv":
            frames = [pd.read_csv(p) for p in source.paths]
            return pd.concat(frames, ignore_index=True)
        return pads.dataset(source.paths, format="parquet").to_table().to_pandas()
    except (OSError, ValueError) as err:
        raise DataError(f"data.source: cannot read {source.paths[0]}: {one_line(err)[:200]}") from None


def inspect(cfg: DataConfig, storage_root: Path) -> tuple[pd.DataFrame, list[str]]:
    """Read and check the configured data without Ray: what `kiln validate` and `kiln plan` need."""
    frame = read_local(resolve_source(cfg, storage_root))
    return frame, check_frame(frame, cfg)


def fingerprint(source: Source) -> str:
    """sha256 of the local files' bytes (URIs: of their names), recorded on the model."""
    digest = hashlib.sha256()
    for p in source.paths:
        path = Path(p)
        if path.is_file():
            with path.open("rb") as fh:
                for chunk in iter(lambda: fh.read(1 << 20), b""):
                    digest.update(chunk)
        else:
            digest.update(p.encode())
    return digest.hexdigest()[:16]


# --- checks, split, statistics -----------------------------------------------------------------


def feature_columns(frame: pd.DataFrame, cfg: DataConfig) -> list[str]:
    if cfg.label not in frame.columns:
        raise DataError(f"data.label: column {cfg.label!r} not in data (columns: "
                        + ", ".join(map(str, frame.columns[:8])) + ("..." if frame.shape[1] > 8 else "") + ")")
    if cfg.features is None:
        return [str(c) for c in frame.columns if c != cfg.label]
    missing = [f for f in cfg.features if f not in frame.columns]
    if missing:
        raise DataError(f"data.features: column {missing[0]!r} not in data")
    if cfg.label in cfg.features:
        raise DataError(f"data.features: the label column {cfg.label!r} cannot also be a feature")
    return list(cfg.features)


def check_frame(frame: pd.DataFrame, cfg: DataConfig) -> list[str]:
    """Raise DataError on anything that would break training; return the feature columns."""
    features = feature_columns(frame, cfg)
    if not features:
        raise DataError("data.features: no feature columns besides the label")
    for column in features:
        values = frame[column]
        if not pd.api.types.is_numeric_dtype(values) or pd.api.types.is_bool_dtype(values):
            raise DataError(f"data: feature column {column!r} is not numeric (dtype {values.dtype})")
        bad = int((~np.isfinite(values.to_numpy(dtype=np.float64))).sum())
        if bad:
            raise DataError(f"data: feature column {column!r} has {bad} NaN or infinite values")
    labels = frame[cfg.label]
    if labels.isna().any():
        raise DataError(f"data.label: column {cfg.label!r} has {int(labels.isna().sum())} missing values")
    classes = labels.nunique()
    if classes < 2:
        raise DataError(f"data.label: column {cfg.label!r} has a single class; need at least 2")
    parts = stratified_split(labels.to_numpy(), cfg.split)
    if min(len(p) for p in parts) < 1 or len(parts[0]) < classes:
        raise DataError(f"data: {len(frame)} rows are too few for split val={cfg.split.val:g} "
                        f"test={cfg.split.test:g} over {classes} classes")
    return features


def split_counts(num_rows: int, split: SplitConfig) -> tuple[int, int, int]:
    num_test = int(round(num_rows * split.test))
    num_val = int(round(num_rows * split.val))
    return num_rows - num_val - num_test, num_val, num_test


def stratified_split(labels: np.ndarray, split: SplitConfig) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Row indices of train/val/test: each class split in the same proportions, fixed by the seed."""
    rng = np.random.default_rng(split.seed)
    parts: tuple[list, list, list] = ([], [], [])
    keys = np.array([str(v) for v in labels])
    for cls in sorted(set(keys)):
        idx = rng.permutation(np.flatnonzero(keys == cls))
        num_train, num_val, num_test = split_counts(len(idx), split)
        parts[2].append(idx[:num_test])
        parts[1].append(idx[num_test:num_test + num_val])
        parts[0].append(idx[num_test + num_val:])
    return tuple(np.sort(np.concatenate(p)) for p in parts)  # type: ignore[return-value]


def fit_preprocessing(train: pd.DataFrame, features: list[str], all_labels: pd.Series) -> Preprocessing:
    """Standardisation statistics from the training rows only; label values from the whole set."""
    x = train[features].to_numpy(dtype=np.float64)
    std = x.std(axis=0)
    std[std < 1e-12] = 1.0  # constant columns pass through centred, not divided by zero
    labels = sorted({plain(v) for v in all_labels}, key=lambda v: (isinstance(v, str), v))
    return Preprocessing(features, x.mean(axis=0).tolist(), std.tolist(), labels)


def plain(value: Any) -> Any:
    """numpy scalars to Python values, so labels survive JSON and come back as they went in."""
    return value.item() if isinstance(value, np.generic) else value
