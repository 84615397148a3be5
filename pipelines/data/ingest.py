"""Ingest with Ray Data: read the files, check them, split, standardise, hand datasets to training."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from pipelines.config import KilnConfig, check_column_encoders
from pipelines.data import embedding_pass, images, preprocessing, pretrained, schema, sources
from pipelines.data.preprocessing import Preprocessing, plain, to_block
from pipelines.errors import DataError, one_line


@dataclass(frozen=True)
class Splits:
    train: object  # ray.data.Dataset with a batch's columns (preprocessing.Preprocessing.transform) and y (class
    # index or standardised target); None when `arrays` holds it
    val: object
    test_frame: pd.DataFrame  # the test split's feature columns, raw (strings, missing cells) as read
    test_y: np.ndarray
    example: pd.DataFrame  # a few raw test rows: the registered model's input example
    preprocessing: Preprocessing
    fingerprint: str
    num_rows: dict[str, int]
    arrays: dict[str, object] | None = None  # object refs of (batch, y) for train and val, when they fit the cache

    train_frame: pd.DataFrame | None = None  # the train split's raw feature columns and labels, for the baseline
    val_frame: pd.DataFrame | None = None  # the val split's, for the runs' dataset inputs
    source: str = ""  # where the rows were read: a file, a folder or a URI (a builtin: its parquet file)
    notes: tuple[str, ...] = ()  # what the data check decided (columns left out, rows without a label)

    def frames(self, label: str) -> dict[str, pd.DataFrame]:
        """The three splits as raw tables with their label column: what the runs record as dataset inputs."""
        test = self.test_frame.assign(**{label: self.test_y})
        return {"train": self.train_frame, "val": self.val_frame, "test": test}

    @property
    def test_labels(self) -> list:
        return [plain(v) for v in self.test_y]

    @property
    def input_dim(self) -> int:
        """The network's input width (every encoded column)."""
        return self.preprocessing.width

    @property
    def num_classes(self) -> int:
        return len(self.preprocessing.labels)

    @property
    def output_dim(self) -> int:
        return self.preprocessing.output_dim


def describe(cfg: KilnConfig, splits: Splits) -> str:
    """What ingest found, and how trials will read it."""
    decoded = any(slot.kind == "image" for slot in splits.preprocessing.slots)
    where = (
        "  trials keep train and val in memory"
        if splits.arrays is not None
        else "  train and val stream through Ray Data each epoch"
        + (", images decoded in its tasks" if decoded else "")
        + f" (over train.cache_shard_mb={cfg.train.cache_shard_mb} decoded)"
    )
    features = len(splits.preprocessing.features)
    target = "regression" if splits.preprocessing.regression else f"{splits.num_classes} classes"
    return "\n".join(
        [
            *(f"  {n}" for n in splits.notes),
            f"  {sum(splits.num_rows.values())} rows, {features} features ({splits.input_dim} encoded), "
            f"{target}; split {splits.num_rows}",
            *(
                f"  {e.name}: embedded once, here, by the pretrained encoder in {e.pretrained} ({e.dim} wide)"
                if e.frozen
                else f"  {e.name}: the pretrained encoder in {e.pretrained} trains in every trial ({e.finetune}, "
                f"up to {e.max_length} tokens)"
                for e in splits.preprocessing.encoders
                if e.pretrained
            ),
            where,
        ]
    )


def read(source: sources.Source):
    import ray.data

    if source.format == "parquet":
        # Ray Data 2.60's default parquet reader (datasource v2) starts 32 FooterReader actors and a listing task
        # of a whole CPU to read the footers: seconds on 2 cores before the first row. The v1 reader plans its
        # read tasks from the footers here, on the driver (kiln score reads the same way).
        ray.data.DataContext.get_current().use_datasource_v2 = False
        return ray.data.read_parquet(source.paths)
    from pyarrow import csv

    # An empty cell is missing, as pandas.read_csv (kiln validate, the pyfunc's users) reads it; pyarrow's default
    # keeps it as an empty string in string columns, which would make "yes"/"no"/"" three categories.
    return ray.data.read_csv(source.paths, convert_options=csv.ConvertOptions(strings_can_be_null=True))


def read_error(source: sources.Source, err: Exception) -> str:
    """Why the source did not read, in the reader's own words: Ray Data wraps a CSV parse error in its retry
    messages ("Failed to apply UDF transform"), so a local CSV is parsed again here for the line that names the
    row (pyarrow's "Expected 2 columns, got 1: ...")."""
    if source.format == "csv" and "://" not in source.paths[0]:
        from pyarrow import csv

        for path in source.paths:
            try:
                csv.read_csv(path)
            except Exception as parse_error:  # pyarrow.lib.ArrowInvalid and kin
                return f"{Path(path).name}: {one_line(parse_error)}"
    return one_line(err)


def ingest(cfg: KilnConfig, *, say=print) -> Splits:
    """Read with Ray Data, split by seed, fit statistics on train only, materialise once for all trials. Objects
    lost on the way (a node gone, a spilled block unreadable) are retried once, from the source, saying so."""
    from ray.exceptions import ObjectLostError

    try:
        return _ingest(cfg)
    except ObjectLostError as err:
        say(f"  ingest lost objects ({type(err).__name__}); reading the source again, once")
        return _ingest(cfg)


def _ingest(cfg: KilnConfig) -> Splits:
    import ray.data
    from ray.data.extensions import TensorArray
    from ray.exceptions import ObjectLostError

    source = sources.resolve_source(cfg.data, cfg.storage_root)
    try:
        frame = (
            sources.read_local(source)
            if source.format == "images"
            else sources.anchor_image_paths(read(source).to_pandas(), source)
        )
    except (ObjectLostError, DataError):
        raise  # the cluster's fault, not the data's; or the data's, already named
    except Exception as err:  # Ray wraps reader errors in its own types
        raise DataError(f"data.source: cannot read {source.paths[0]}: {read_error(source, err)[:200]}") from None
    checked = sources.check_frame(frame, cfg.data)
    check_column_encoders(cfg, checked.types)
    frame, features = checked.frame, checked.features
    label = cfg.data.label
    train_idx, val_idx, test_idx = sources.split(frame[label].to_numpy(), cfg.data.split, checked.task)
    try:
        prep = preprocessing.fit(
            frame.iloc[train_idx],
            checked.types,
            frame[label],
            **preprocessing.sizes(cfg.data),
            backbones=pretrained.columns(cfg.model, checked.types, cfg.train.finetune),
            task=checked.task,
            train_labels=frame[label].iloc[train_idx],
        )
    except images.ImageError as err:
        raise DataError(f"data.source: {err}") from None
    prep = dataclasses.replace(prep, identifiers=schema.identifiers(checked.columns))
    embedded = embedding_pass.embed_columns(  # a frozen pretrained encoder's one pass, before any transform
        prep,
        frame[features],
        cache=cfg.storage_root / "embeddings",
        batch_size=cfg.model.pretrained_batch_size,
        use_gpu=cfg.train.use_gpu is not False,
    )

    def arrays_of(idx: np.ndarray) -> tuple[dict[str, np.ndarray], np.ndarray]:
        # Images that fit are decoded here, in the driver, once for every trial: on 2 cores that beat Ray Data
        # tasks (benchmarks/ingest_images.py: 1297 images/s on one core against 411/s a core from map_batches).
        part = frame.iloc[idx]  # its index: the table's rows, which an image error names
        try:
            return prep.transform(part[features], allow_paths=True), prep.encode(part[label])
        except images.ImageError as err:
            raise DataError(f"data.source: {err}") from None

    def to_dataset(arrays: tuple[dict[str, np.ndarray], np.ndarray]):
        columns = to_block(*arrays)
        # Materialised once here, so each trial reads blocks instead of re-running the pipeline.
        return ray.data.from_pandas(
            pd.DataFrame({k: TensorArray(v) if v.ndim > 1 else v for k, v in columns.items()})
        ).materialize()

    num_rows = {"train": len(train_idx), "val": len(val_idx), "test": len(test_idx)}
    fits = (num_rows["train"] + num_rows["val"]) * prep.row_bytes <= cfg.train.cache_shard_mb << 20
    image_columns = [n for n, kind in checked.types.items() if kind == "image"]
    # Data that fits goes to trials through the object store as plain arrays; only larger data streams
    # through Ray Data, so only then are the datasets built (building both cost time and memory twice).
    if fits:
        arrays = {"train": ray.put(arrays_of(train_idx)), "val": ray.put(arrays_of(val_idx))}
        train_ds = val_ds = None
    elif image_columns:  # decoded, they would not fit: Ray Data decodes them afresh every epoch, streamed
        arrays = None
        train_ds, val_ds = (
            decoding(frame.iloc[idx], prep, features, label, seed=cfg.data.split.seed, split=name)
            for name, idx in (("train", train_idx), ("val", val_idx))
        )
    else:
        arrays, train_ds, val_ds = None, to_dataset(arrays_of(train_idx)), to_dataset(arrays_of(val_idx))

    # The test rows as a request or the pyfunc gives them: an image column's file names read as bytes (the
    # model never opens a file after ingest), so evaluation, the registry's gate and the input example agree.
    test = sources.with_image_bytes(frame.iloc[test_idx], image_columns)
    if image_columns:
        check_images(test[features], prep)  # evaluation decodes them after the search: fail now instead
    return Splits(
        train=train_ds,
        val=val_ds,
        test_frame=test[features].reset_index(drop=True),
        test_y=test[cfg.data.label].to_numpy(),
        example=test[features].head(4).reset_index(drop=True),
        preprocessing=prep,
        fingerprint=sources.fingerprint(source),
        num_rows=num_rows,
        arrays=arrays,
        train_frame=frame.iloc[train_idx][[*features, cfg.data.label]].reset_index(drop=True),
        val_frame=frame.iloc[val_idx][[*features, cfg.data.label]].reset_index(drop=True),
        source=source.paths[0] if len(source.paths) == 1 else str(Path(source.paths[0]).parent),
        notes=(*sources.describe(checked, cfg.data), *embedded),
    )


ROW = "__kiln_row__"
DECODE_CPUS = 0.25  # a decode task's share: what the search leaves free beside its trials (RESERVED_CPU)
# Rows a decode task takes: a task's start costs about what 200 small JPEGs do on 2 busy cores
# (benchmarks/ingest_images.py: 472 images/s in tasks of 256 rows, 1514/s of 1000), so tasks are large, up to
# 64 MiB of decoded pixels; a few are in flight at a time.
DECODE_BLOCK_BYTES, MIN_DECODE_ROWS, MAX_DECODE_ROWS = 64 << 20, 256, 2048


def decoding(part: pd.DataFrame, prep: Preprocessing, features: list[str], label: str, *, seed: int, split: str):
    """A lazy Ray Data pipeline from a split's rows (image cells: file names or encoded bytes, small) to the
    (x, y) the training loop streams: each epoch's pass decodes, resizes and standardises in Ray Data tasks,
    so no more than a few blocks of decoded pixels exist at a time. The rows are shuffled once here (a class
    folder lists one class after another), and the loop shuffles again within each chunk it reads.

    Before any trial starts, one pass decodes every image and keeps none: an image that does not decode is a
    data error now, naming its row and file, not a failed trial at hour 30."""
    import ray.data

    rows = part[[*features, label]].sample(frac=1.0, random_state=seed)
    rows = rows.assign(**{ROW: rows.index}).reset_index(drop=True)
    per_block = min(max(MIN_DECODE_ROWS, DECODE_BLOCK_BYTES // prep.row_bytes), MAX_DECODE_ROWS)
    blocks = ray.data.from_pandas([rows.iloc[start : start + per_block] for start in range(0, len(rows), per_block)])
    checked = blocks.map_batches(
        _Decode(prep, features, label, check=True), batch_format="pandas", batch_size=per_block, num_cpus=DECODE_CPUS
    )
    failed = next((e for batch in checked.iter_batches(batch_size=None) for e in batch["error"] if e), None)
    if failed:
        raise DataError(f"data.source: {split} split: {failed}")
    return blocks.map_batches(
        _Decode(prep, features, label), batch_format="pandas", batch_size=per_block, num_cpus=DECODE_CPUS
    )


class _Decode:
    """One block of raw rows to a batch's columns (uint8 pixels and the other columns) and y (the label's targets); with
    `check`, to the first image error's message instead ("" when every image decodes)."""

    def __init__(self, prep: Preprocessing, features: list[str], label: str, *, check: bool = False):
        self.prep, self.features, self.label, self.check = prep, features, label, check

    def __call__(self, rows: pd.DataFrame) -> dict[str, np.ndarray]:
        rows = rows.set_index(ROW)  # the table's own row numbers, for an image error to name
        if self.check:
            try:
                self.prep.transform(rows[self.features], allow_paths=True)
            except images.ImageError as err:
                return {"error": np.array([str(err)])}
            return {"error": np.array([""])}
        return to_block(self.prep.transform(rows[self.features], allow_paths=True), self.prep.encode(rows[self.label]))


def check_images(features: pd.DataFrame, prep: Preprocessing, *, rows: int = 256) -> None:
    """Decode `features`' images a few hundred rows at a time, keeping none: an ImageError is a data error."""
    try:
        for start in range(0, len(features), rows):
            prep.transform(features.iloc[start : start + rows])
    except images.ImageError as err:
        raise DataError(f"data.source: test split: {err}") from None
