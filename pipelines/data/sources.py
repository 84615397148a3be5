"""Data: sources, checks (column types: schema.py), a deterministic stratified split.

Everything here is plain pandas/numpy so it is testable without Ray; `ingest.py` binds it to Ray Data.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from pipelines import task_metrics
from pipelines.config import DataConfig, SplitConfig
from pipelines.data import builtin, images, preprocessing, schema, task
from pipelines.data.schema import Column
from pipelines.errors import DataError, one_line


@dataclass(frozen=True)
class Source:
    paths: list[str]  # files, or one URI that the reader expands; images: the root of the class folders
    format: str  # parquet | csv | images


# --- sources ---------------------------------------------------------------------------------


def resolve_source(cfg: DataConfig, storage_root: Path) -> Source:
    """Turn `data.source` into files to read; builtin sets are written once as parquet."""
    source = cfg.source
    if source.startswith(builtin.PREFIX):
        name = source.removeprefix(builtin.PREFIX)
        if name not in builtin.NAMES:
            raise DataError(
                f"data.source: unknown builtin {source!r}; choose one of "
                + ", ".join(builtin.PREFIX + b for b in builtin.NAMES)
            )
        if name == "digits-images":
            return Source([str(builtin.write_digits(storage_root / "datasets" / name))], "images")
        return Source([str(builtin.write_table(name, storage_root / "datasets"))], "parquet")
    if "://" in source and not source.startswith("file://"):
        return Source([source], _format_of(source))
    path = Path(source.removeprefix("file://")).expanduser().resolve()
    if not path.exists():
        raise DataError(f"data.source: {source} not found")
    if path.is_dir() and images.is_class_folder_tree(path):  # root/<label>/<image>: columns image, label
        return Source([str(path)], "images")
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
    """parquet or csv by the file's suffix; an object-store URI's query options (?endpoint_override=...) aside."""
    suffix = Path(path.split("?", 1)[0].rstrip("/")).suffix.lower()
    if suffix in (".parquet", ".pq", ""):
        return "parquet"
    if suffix == ".csv":
        return "csv"
    raise DataError(f"data.source: {path} is neither parquet nor CSV")


def read_local(source: Source) -> pd.DataFrame:
    """Read a source without Ray (validation, small tools)."""
    import pyarrow.dataset as pads

    if source.format == "images":
        return pd.DataFrame(images.class_folders(Path(source.paths[0])), columns=["image", "label"])
    try:
        if source.format == "csv":
            frames = [pd.read_csv(p) for p in source.paths]
            return anchor_image_paths(pd.concat(frames, ignore_index=True), source)
        return anchor_image_paths(pads.dataset(source.paths, format="parquet").to_table().to_pandas(), source)
    except (OSError, ValueError) as err:
        raise DataError(f"data.source: cannot read {source.paths[0]}: {one_line(err)[:200]}") from None


def label_column(cfg: DataConfig, storage_root: Path) -> pd.Series:
    """Only the label column, read without Ray: what deciding the task needs before anything starts."""
    import pyarrow.dataset as pads

    source = resolve_source(cfg, storage_root)
    if source.format == "images":
        labels = read_local(source)
        if cfg.label not in labels.columns:
            raise DataError(
                f"data.label: an image folder's label column is 'label' (the folder names), not {cfg.label!r}"
            )
        return labels[cfg.label]
    try:
        if source.format == "csv":
            frames = [pd.read_csv(p, usecols=lambda c: str(c) == cfg.label) for p in source.paths]
            labels = pd.concat(frames, ignore_index=True)
        else:
            dataset = pads.dataset(source.paths, format="parquet")
            if cfg.label not in dataset.schema.names:
                labels = pd.DataFrame()
            else:
                labels = dataset.to_table(columns=[cfg.label]).to_pandas()
    except (OSError, ValueError) as err:
        raise DataError(f"data.source: cannot read {source.paths[0]}: {one_line(err)[:200]}") from None
    if cfg.label not in labels.columns:
        raise DataError(f"data.label: column {cfg.label!r} not in data")
    return labels[cfg.label]


def inspect(cfg: DataConfig, storage_root: Path) -> Checked:
    """Read and check the configured data without Ray: what `kiln validate` and `kiln plan` need."""
    return check_frame(read_local(resolve_source(cfg, storage_root)), cfg)


def anchor_image_paths(frame: pd.DataFrame, source: Source) -> pd.DataFrame:
    """A column of image file names is read relative to the table's own folder, as a user writes it. Only
    regular files under that folder: a table cannot make Kiln read /etc/shadow, climb out with ../ or a
    symlink, or hang on a FIFO named x.png (DataError naming the column and row)."""
    if "://" in source.paths[0]:
        return frame
    folder = Path(source.paths[0]).parent.resolve()
    for name in frame.columns:
        present = frame[name].dropna()
        if (
            not pd.api.types.is_numeric_dtype(frame[name])
            and len(present)
            and all(isinstance(v, str) and images.is_image_cell(v) for v in present)
        ):
            frame[name] = [
                v if not isinstance(v, str) else image_file(folder, v, name, row)
                for row, v in zip(frame.index, frame[name], strict=True)
            ]
    return frame


def image_file(folder: Path, name: str, column: str, row) -> str:
    """`name` under `folder` when it is a regular file there (images.file_under), else a DataError naming the
    column and row."""
    try:
        return str(images.file_under(folder, name))
    except images.ImageError as err:
        raise DataError(f"column {column!r} row {row}: {err}") from None


def with_image_bytes(frame: pd.DataFrame, columns: list[str]) -> pd.DataFrame:
    """`frame` with each image column's file names replaced by the files' bytes."""
    if not columns:
        return frame
    frame = frame.copy()
    for name in columns:
        frame[name] = pd.Series(
            [Path(v).read_bytes() if isinstance(v, str) else v for v in frame[name]], index=frame.index, dtype=object
        )
    return frame


def fingerprint(source: Source) -> str:
    """sha256 of the local files' bytes (URIs: of their names), recorded on the model."""
    digest = hashlib.sha256()
    paths = source.paths
    if source.format == "images":
        paths = [p for p, _ in images.class_folders(Path(source.paths[0]))]
    for p in paths:
        path = Path(p)
        if path.is_file():
            with path.open("rb") as fh:
                for chunk in iter(lambda: fh.read(1 << 20), b""):
                    digest.update(chunk)
        else:
            digest.update(p.encode())
    return digest.hexdigest()[:16]


# --- checks, split, statistics -----------------------------------------------------------------


@dataclass(frozen=True)
class Checked:
    frame: pd.DataFrame  # the rows that have a label
    columns: list[Column]  # every column of the file, with its type and use (schema.infer)
    rows_without_label: int
    task: str = task_metrics.CLASSIFICATION
    task_note: str | None = None  # why, when data.task is auto

    @property
    def types(self) -> dict[str, str]:
        """The feature columns, in order, with their types."""
        return {c.name: c.type for c in self.columns if c.is_feature}

    @property
    def features(self) -> list[str]:
        return list(self.types)


def check_frame(frame: pd.DataFrame, cfg: DataConfig) -> Checked:
    """Raise DataError on anything that would break training; the rows, columns and notes to train on."""
    columns = schema.infer(frame, cfg)
    labels = frame[cfg.label]
    unlabelled = int(labels.isna().sum())
    if unlabelled:
        frame = frame[labels.notna()].reset_index(drop=True)
        labels = frame[cfg.label]
    kind, note = task.decide(labels, cfg)
    classes = labels.nunique()
    if kind == task_metrics.CLASSIFICATION and classes < 2:
        raise DataError(
            f"data.label: column {cfg.label!r} has {classes} class{'es' if classes != 1 else ''} "
            "among the labelled rows; need at least 2"
        )
    parts = split(labels.to_numpy(), cfg.split, kind)
    too_few = len(parts[0]) < (classes if kind == task_metrics.CLASSIFICATION else 2)
    if min(len(p) for p in parts) < 1 or too_few:
        over = f" over {classes} classes" if kind == task_metrics.CLASSIFICATION else ""
        raise DataError(
            f"data: {len(frame)} rows are too few for split val={cfg.split.val:g} test={cfg.split.test:g}{over}"
        )
    return Checked(frame, columns, unlabelled, kind, note)


def describe(checked: Checked, cfg: DataConfig) -> list[str]:
    """The notes `kiln validate` and `kiln run` print about what the data check decided."""
    notes = (
        [f"note: {checked.rows_without_label} rows have no {cfg.label!r} and are left out"]
        if checked.rows_without_label
        else []
    )
    notes += [checked.task_note] if checked.task_note else []
    asked = ("label", "excluded: data.drop", "excluded: not in data.features")  # the user's own choices
    notes += [f"note: column {c.name!r} {c.use}" for c in checked.columns if c.type is None and c.use not in asked]
    categories = (category_note(c, cfg) for c in checked.columns if c.type == "category")
    return notes + [note for note in categories if note]


def category_note(column, cfg: DataConfig) -> str:
    """What becomes of a category with many values (data.categories), from its distinct values in the whole
    table (the train split's decide, so a column near data.max_categories may go either way)."""
    if preprocessing.embedded(cfg.categories, column.distinct, cfg.max_categories):
        return (
            f"note: column {column.name!r} ({column.distinct} values) is embedded: a learned vector per value seen "
            "twice in train (data.categories)"
        )
    if column.distinct > cfg.max_categories:
        return (
            f"note: column {column.name!r} keeps its {cfg.max_categories} most frequent of {column.distinct} "
            "values; the rest share 'other' (data.categories: auto embeds them all)"
        )
    return ""


def split_counts(num_rows: int, split: SplitConfig) -> tuple[int, int, int]:
    num_test = int(round(num_rows * split.test))
    num_val = int(round(num_rows * split.val))
    return num_rows - num_val - num_test, num_val, num_test


def split(labels: np.ndarray, cfg: SplitConfig, kind: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Row indices of train/val/test: stratified by class, or for regression by decile of the target, so each
    split sees the whole range."""
    if kind == task_metrics.REGRESSION:
        deciles = pd.qcut(pd.Series(labels, dtype=np.float64).rank(method="first"), 10, labels=False, duplicates="drop")
        return stratified_split(deciles.to_numpy(), cfg)
    return stratified_split(labels, cfg)


def stratified_split(labels: np.ndarray, split: SplitConfig) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Row indices of train/val/test: each class split in the same proportions, fixed by the seed."""
    rng = np.random.default_rng(split.seed)
    parts: tuple[list, list, list] = ([], [], [])
    keys = np.array([str(v) for v in labels])
    for cls in sorted(set(keys)):
        idx = rng.permutation(np.flatnonzero(keys == cls))
        num_train, num_val, num_test = split_counts(len(idx), split)
        parts[2].append(idx[:num_test])
        parts[1].append(idx[num_test : num_test + num_val])
        parts[0].append(idx[num_test + num_val :])
    return tuple(np.sort(np.concatenate(p)) for p in parts)  # type: ignore[return-value]
