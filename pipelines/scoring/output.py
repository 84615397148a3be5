"""Where `kiln score` writes: a local file or an object-store URI (s3://bucket/scored.parquet?endpoint_override=...),
through a pyarrow filesystem either way. Each file is written a batch at a time under a hidden temporary name
beside its final one and moved into place only when the job has accounted for every row (an object store's move
is a copy and a delete: the final key appears whole or not at all)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from pipelines.cluster import storage
from pipelines.errors import ConfigError, DataError
from pipelines.scoring import rows

FORMATS = {".parquet": "parquet", ".pq": "parquet", ".csv": "csv"}


def located(given: str) -> tuple[object, str, str]:
    """`--output` as (its pyarrow filesystem, the path in it, how messages show it: an object-store URI without
    credentials or query)."""
    import pyarrow.fs

    if "://" in given and not given.startswith("file://"):
        fs, path = storage.uri_filesystem(given, "--output")
        return fs, path, storage.shown(given.split("?", 1)[0])
    local = str(Path(given.removeprefix("file://")).expanduser().resolve())
    return pyarrow.fs.LocalFileSystem(), local, local


def exists(fs, path: str) -> bool:
    import pyarrow.fs

    return fs.get_file_info(path).type != pyarrow.fs.FileType.NotFound


def check_new(fs, path: str, shown: str, *, overwrite: bool) -> None:
    """Before anything starts or is created: ConfigError when the store cannot be reached, DataError when `path`
    exists and `overwrite` is off."""
    try:
        found = exists(fs, path)
    except OSError as err:
        raise ConfigError(f"--output {shown}: cannot write there: {str(err).splitlines()[0]}") from None
    if found and not overwrite:
        raise DataError(f"--output {shown}: it exists; pass --overwrite to replace it")


@dataclass(frozen=True)
class Target:
    fs: object  # pyarrow.fs.FileSystem
    path: str  # in fs
    shown: str  # for messages, the MLflow record and the closing line: the URI without credentials or query

    @classmethod
    def of(cls, given: str, *, overwrite: bool = False) -> Target:
        """`--output` as given; ConfigError for a format Kiln does not write, DataError when it exists and
        `overwrite` is off (nothing is started or written either way)."""
        target = cls(*located(given))
        target.format  # noqa: B018 (checked before anything starts)
        check_new(target.fs, target.path, target.shown, overwrite=overwrite)
        return target

    @property
    def format(self) -> str:
        try:
            return FORMATS[Path(self.path).suffix.lower()]
        except KeyError:
            folder = "or in / for a folder of parts"
            raise ConfigError(f"--output {self.shown}: end it in .parquet or .csv, {folder}") from None

    @property
    def errors(self) -> Target:
        """`<output>.errors.parquet`: the rows that failed, beside the output."""
        return Target(self.fs, self.path + ".errors.parquet", self.shown + ".errors.parquet")

    @property
    def partial(self) -> str:
        folder, name = self.path.rsplit("/", 1)
        return f"{folder}/.{name}.partial"

    def exists(self, path: str) -> bool:
        return exists(self.fs, path)

    def remove(self, path: str) -> None:
        if self.exists(path):
            self.fs.delete_file(path)

    def writer(self, fmt: str | None = None) -> Writer:
        """A writer of the temporary file, its folder made first (a bucket: where allow_bucket_creation says)."""
        self.fs.create_dir(self.path.rsplit("/", 1)[0], recursive=True)
        return Writer(self.fs, self.partial, fmt or self.format)

    def commit(self) -> None:
        """The written file under its final name, replacing an older one."""
        self.remove(self.path)
        self.fs.move(self.partial, self.path)


class Writer:
    """One file written a batch at a time to a filesystem's output stream (parquet through one ParquetWriter, CSV
    through one CSVWriter: one header), every batch cast to the first one's schema."""

    def __init__(self, fs, path: str, fmt: str):
        self.fs, self.path, self.fmt = fs, path, fmt
        self.stream, self.writer, self.schema = None, None, None

    def __enter__(self) -> Writer:
        self.stream = self.fs.open_output_stream(self.path)
        return self

    def write(self, table) -> None:
        """A pyarrow Table (or a pandas frame) of rows; an empty one is skipped (its columns may have no types
        yet: the first rows decide them)."""
        import pyarrow as pa

        if isinstance(table, pd.DataFrame):
            table = pa.Table.from_pandas(table.reset_index(drop=True), preserve_index=False)
        if table.num_rows == 0:
            return
        if self.writer is None:
            self.writer, self.schema = self._open(table.schema), table.schema
        self.writer.write_table(table.cast(self.schema))

    def _open(self, schema):
        import pyarrow.csv
        import pyarrow.parquet

        if self.fmt == "csv":
            return pyarrow.csv.CSVWriter(self.stream, schema)
        return pyarrow.parquet.ParquetWriter(self.stream, schema)

    def __exit__(self, *exc) -> None:
        import pyarrow as pa

        if self.writer is None and exc[0] is None:  # no row: still a file, with the row column
            self.writer = self._open(pa.schema([(rows.ROW, pa.int64())]))
        if self.writer is not None:
            self.writer.close()
        self.stream.close()
