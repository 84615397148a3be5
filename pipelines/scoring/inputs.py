"""What `kiln score` reads, without starting Ray: a table (CSV or parquet: a file, a folder of them, or an
object-store URI) read as training reads it, or a folder of images, listed as a table of file names (`path`, and
the model's image column) whose files the scoring actors open. Its columns and, where they are known up front,
its row count are checked before anything starts."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from pipelines.config import KilnConfig
from pipelines.data import images, sources
from pipelines.errors import DataError
from pipelines.scoring.rows import PATH

# A read task's share of a CPU (Ray Data's default: a whole one). On a shared cluster the actor pool can leave every
# node less than a whole CPU (an endpoint's replica holds a quarter of one): a read task of one CPU would then wait
# forever, and the actors with it, for blocks no task can read.
READ_CPUS = 0.25


@dataclass(frozen=True)
class Input:
    source: sources.Source  # the files read (an image folder: every image file), fingerprinted on the record
    columns: list[str]
    rows: int | None  # known before reading (parquet footers, an image folder's listing); CSV: None
    folder: str | None = None  # where image file names are opened: the table's or the image folder's own folder
    listing: pd.DataFrame | None = None  # an image folder: its files as rows


def open_input(cfg: KilnConfig, path: str, types: dict[str, str]) -> Input:
    """`path` as `kiln score` reads it, for a model whose features have `types`; DataError naming `--input`."""
    local = Path(path.removeprefix("file://")).expanduser().resolve()
    if "://" not in path.removeprefix("file://") and local.is_dir():
        entries = list(local.rglob("*"))  # walked once: a folder of a million photos is slow to list
        if not images.holds_tables(entries):
            return _image_folder(local, entries, path, types)
    try:
        source = sources.resolve_source(cfg.data.model_copy(update={"source": path}), cfg.storage_root)
    except DataError as err:  # the same rules as data.source, named as this command's flag
        raise DataError(str(err).replace("data.source:", "--input:", 1)) from None
    first = source.paths[0]
    folder = None if "://" in first else str(Path(first).parent)
    return Input(source, columns(source), rows_in(source), folder)


def _image_folder(root: Path, entries: list[Path], given: str, types: dict[str, str]) -> Input:
    names = images.image_files(root, entries)
    if not names:
        raise DataError(f"--input {given}: no .csv, .parquet or image files ({', '.join(images.SUFFIXES)}) in it")
    if list(types.values()) != ["image"]:
        raise DataError(
            f"--input {given}: a folder of images is scored by a model of one image column; this model reads "
            + ", ".join(f"{name} ({kind})" for name, kind in types.items())
        )
    (feature,) = types
    listing = pd.DataFrame({PATH: names, feature: names})
    source = sources.Source([str(root / name) for name in names], "image_files")  # fingerprinted file by file
    return Input(source, list(listing.columns), len(listing), str(root), listing)


def columns(source: sources.Source) -> list[str]:
    """The input's column names, from its first file's header or schema (nothing else is read)."""
    import pyarrow.csv
    import pyarrow.parquet

    first = source.paths[0]
    if source.format == "parquet":
        return list(pyarrow.parquet.read_schema(first).names)
    if source.format != "csv":
        raise DataError(f"--input {first}: give a CSV or parquet table, or a folder of images to score")
    with pyarrow.csv.open_csv(first) as reader:
        return list(reader.schema.names)


def rows_in(source: sources.Source) -> int | None:
    """The input's row count from parquet footers, independent of what came through the pool (CSV: None)."""
    import pyarrow.parquet

    if source.format != "parquet" or any("://" in p for p in source.paths):
        return None
    return sum(pyarrow.parquet.ParquetFile(p).metadata.num_rows for p in source.paths)


def dataset(given: Input, batch_size: int):
    """The input as a Ray Dataset: the table's own reader, or the image folder's listing in blocks of a batch
    (so the actor pool shares it)."""
    import ray.data

    if given.listing is not None:
        listing = given.listing
        return ray.data.from_pandas(
            [listing.iloc[i : i + batch_size] for i in range(0, len(listing), batch_size)] or [listing]
        )
    if given.source.format == "csv":
        return ray.data.read_csv(given.source.paths, num_cpus=READ_CPUS)
    return ray.data.read_parquet(given.source.paths, num_cpus=READ_CPUS)  # the reader job.pooled chose (v1)
