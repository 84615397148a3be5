"""`kiln score --output DIR/`: a folder of parquet part files written by Ray Data's own writer, where the actors run
(the driver sees no row), for outputs too big for one file or jobs spread over a cluster.

Rows carry their input row numbers from the reader: the driver plans the reads from the parquet footers, a row
group at a time with its first row number known (an image folder: its listing), so part files may come in any
order. Each actor writes the rows it cannot score to a small file of its own under the staging folder; the driver
gathers them into `<DIR>.errors.parquet` (a retried batch's rows once), checks rows in = rows written (the parts'
footers) + rows failed, and only then moves the folder into place. A failure or Ctrl-C removes the staging folder (a
killed job's is removed by the next one) and never leaves a folder under the final name."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

import pandas as pd

from pipelines.cluster import storage
from pipelines.errors import DataError
from pipelines.scoring import inputs, output, rows

FAILED = "_failed"  # the actors' failed rows under the staging folder, gathered at the end


def is_folder(given: str) -> bool:
    """`--output` names a folder of part files: it ends in a slash."""
    return given.split("?", 1)[0].endswith("/")


@dataclass(frozen=True)
class Folder:
    fs: object  # pyarrow.fs.FileSystem
    path: str  # in fs, no trailing slash
    shown: str

    @classmethod
    def of(cls, given: str, *, overwrite: bool = False) -> Folder:
        """As output.Target.of, for a folder: DataError when it exists and `overwrite` is off."""
        fs, path, shown = output.located(given)
        folder = cls(fs, path.rstrip("/"), shown.rstrip("/") + "/")
        output.check_new(folder.fs, folder.path, folder.shown, overwrite=overwrite)
        return folder

    @property
    def staging(self) -> str:
        parent, name = self.path.rsplit("/", 1)
        return f"{parent}/.{name}.partial"

    @property
    def errors(self) -> output.Target:
        shown = self.shown.rstrip("/") + ".errors.parquet"
        return output.Target(self.fs, self.path + ".errors.parquet", shown)

    def exists(self, path: str) -> bool:
        return output.exists(self.fs, path)

    def files(self, path: str) -> list[str]:
        """Every file under `path`, sorted."""
        import pyarrow.fs

        found = self.fs.get_file_info(pyarrow.fs.FileSelector(path, recursive=True, allow_not_found=True))
        return sorted(f.path for f in found if f.type == pyarrow.fs.FileType.File)

    def remove(self, path: str) -> None:
        if self.exists(path):
            self.fs.delete_dir(path)

    def commit(self) -> None:
        """The staging folder's part files under the final name, replacing an older folder."""
        import pyarrow.fs

        self.remove(self.path)
        if isinstance(self.fs, pyarrow.fs.LocalFileSystem):
            self.fs.move(self.staging, self.path)  # one rename
            return
        for path in self.files(self.staging):  # an object store: each object copied and deleted
            self.fs.move(path, self.path + path[len(self.staging) :])
        self.remove(self.staging)


def planned(given: inputs.Input) -> tuple[list[dict], int]:
    """(The reads, the input's row count), from the parquet footers: a row group each, with its file and its
    first row number. An image folder: its listing, counted. DataError for a CSV input, whose rows have no count
    before reading."""
    import pyarrow.parquet

    if given.listing is not None:
        return [], len(given.listing)
    if given.source.format != "parquet":
        raise DataError(
            f"--input {given.source.paths[0]}: a folder output (--output DIR/) numbers rows from parquet footers; "
            "give a parquet input, or write one file (--output scored.parquet)"
        )
    reads, first = [], 0
    for path in given.source.paths:
        fs, inner = _opened(path)
        metadata = pyarrow.parquet.ParquetFile(inner, filesystem=fs).metadata
        for group in range(metadata.num_row_groups):
            reads.append({"path": path, "group": group, "first": first})
            first += metadata.row_group(group).num_rows
    return reads, first


def _opened(path: str):
    """(filesystem or None, path in it) for a local path or an object-store URI (its query options kept)."""
    if "://" in path and not path.startswith("file://"):
        return storage.uri_filesystem(path, "--input")
    return None, path.removeprefix("file://")


def read_pieces(batch: pd.DataFrame, *, columns: list[str], rows_per_block: int):
    """A read task: each planned row group's rows, a block at a time, each with its input row number."""
    import pyarrow as pa
    import pyarrow.parquet

    for path, group, first in zip(batch["path"], batch["group"], batch["first"], strict=True):
        fs, inner = _opened(path)
        file = pyarrow.parquet.ParquetFile(inner, filesystem=fs)
        for part in file.iter_batches(batch_size=rows_per_block, row_groups=[int(group)], columns=columns):
            table = pa.Table.from_batches([part])
            yield table.append_column(rows.ROW, pa.array(range(first, first + table.num_rows), pa.int64()))
            first += table.num_rows


def dataset(given: inputs.Input, reads: list[dict], columns: list[str], batch_size: int):
    """The input as numbered rows: parquet read by the planned row groups, an image folder's listing numbered."""
    import ray.data

    if given.listing is not None:
        listing = given.listing.assign(**{rows.ROW: range(len(given.listing))})
        return ray.data.from_pandas([listing.iloc[i : i + batch_size] for i in range(0, len(listing), batch_size)])
    return ray.data.from_items(reads, override_num_blocks=max(1, len(reads))).map_batches(
        read_pieces,
        fn_kwargs={"columns": list(dict.fromkeys(columns)), "rows_per_block": batch_size},
        batch_size=1,
        batch_format="pandas",
        num_cpus=inputs.READ_CPUS,
    )


def keep_scored(table: pd.DataFrame, failed_to: str, fs) -> pd.DataFrame:
    """An actor's scored batch without its failed rows, which go to a file of their own under `failed_to`."""
    failed = table[rows.ERROR] != ""
    if failed.any():
        import pyarrow as pa
        import pyarrow.parquet

        bad = pa.Table.from_pandas(table.loc[failed, [rows.ROW, rows.ERROR]], preserve_index=False)
        pyarrow.parquet.write_table(bad, f"{failed_to}/{uuid.uuid4().hex}.parquet", filesystem=fs)
    return table.loc[~failed].drop(columns=[rows.ERROR])


def gathered(folder: Folder):
    """The failed rows every actor wrote, each row once (a retried batch wrote its own again), by row number."""
    import pyarrow as pa
    import pyarrow.parquet

    tables = [pyarrow.parquet.read_table(p, filesystem=folder.fs) for p in folder.files(f"{folder.staging}/{FAILED}")]
    if not tables:
        return pa.table({rows.ROW: pa.array([], pa.int64()), rows.ERROR: pa.array([], pa.string())})
    frame = pa.concat_tables(tables).to_pandas().drop_duplicates(rows.ROW).sort_values(rows.ROW)
    return pa.Table.from_pandas(frame, preserve_index=False)


class Counted:
    """Rows the actors have written so far, parts and failed rows, for a folder output's progress line: each file's
    footer read once, a file still being written (no footer yet) skipped until it has one."""

    def __init__(self, folder: Folder):
        self.folder, self.rows = folder, {}

    def __call__(self) -> int:
        import pyarrow.parquet

        for path in self.folder.files(self.folder.staging):
            if path not in self.rows:
                try:
                    self.rows[path] = pyarrow.parquet.ParquetFile(path, filesystem=self.folder.fs).metadata.num_rows
                except (OSError, ValueError):  # pyarrow's ArrowInvalid is a ValueError: a footer not written yet
                    continue
        return sum(self.rows.values())


def written_rows(folder: Folder) -> int:
    """Rows in the staging folder's part files, from their footers."""
    import pyarrow.parquet

    return sum(
        pyarrow.parquet.ParquetFile(p, filesystem=folder.fs).metadata.num_rows
        for p in folder.files(folder.staging)
        if f"/{FAILED}/" not in p
    )
