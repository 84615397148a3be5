"""A folder output's pieces without Ray: reads planned from the footers with their first row numbers, each read
numbering its rows, the actors' failed rows gathered once, and the folder moved into place only whole."""

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipelines.data import sources
from pipelines.errors import DataError
from pipelines.scoring import inputs, parts, rows


def parquet_input(folder, sizes):
    paths = []
    for i, size in enumerate(sizes):
        path = folder / f"part-{i}.parquet"
        pq.write_table(pa.table({"x": list(range(size))}), path, row_group_size=10)
        paths.append(str(path))
    return inputs.Input(sources.Source(paths, "parquet"), ["x"], sum(sizes))


def test_only_a_trailing_slash_makes_a_folder_output():
    assert parts.is_folder("scored/") and parts.is_folder("s3://bucket/scored/?endpoint_override=x")
    assert not parts.is_folder("scored.parquet") and not parts.is_folder("s3://bucket/scored.parquet?a=b/")


def test_reads_are_planned_a_row_group_each_and_number_every_row_once(tmp_path):
    given = parquet_input(tmp_path, [25, 7])
    reads, total = parts.planned(given)
    assert total == 32
    assert [(r["group"], r["first"]) for r in reads] == [(0, 0), (1, 10), (2, 20), (0, 25)]
    batch = pd.DataFrame(reads)
    numbered = pa.concat_tables(parts.read_pieces(batch, columns=["x"], rows_per_block=4)).to_pandas()
    assert numbered[rows.ROW].tolist() == list(range(32))
    assert numbered["x"].tolist() == list(range(25)) + list(range(7))  # each row its own number, no gap


def test_a_csv_input_is_refused_for_a_folder_output(tmp_path):
    (tmp_path / "rows.csv").write_text("x\n1\n")
    given = inputs.Input(sources.Source([str(tmp_path / "rows.csv")], "csv"), ["x"], None)
    with pytest.raises(DataError, match="--input .*rows.csv: a folder output"):
        parts.planned(given)


def test_failed_rows_go_to_their_own_files_and_are_gathered_once(tmp_path):
    folder = parts.Folder.of(str(tmp_path / "scored") + "/")
    failed_to = f"{folder.staging}/{parts.FAILED}"
    folder.fs.create_dir(failed_to, recursive=True)
    batch = pd.DataFrame({rows.ROW: [4, 5, 6], rows.PREDICTION: ["a", "b", "c"], rows.ERROR: ["", "bad", ""]})
    kept = parts.keep_scored(batch, failed_to, folder.fs)
    assert kept[rows.ROW].tolist() == [4, 6] and rows.ERROR not in kept
    parts.keep_scored(batch, failed_to, folder.fs)  # a retried batch writes its failed row again
    assert parts.gathered(folder).to_pylist() == [{rows.ROW: 5, rows.ERROR: "bad"}]


def test_the_folder_appears_under_its_name_only_when_committed(tmp_path):
    folder = parts.Folder.of(str(tmp_path / "scored") + "/")
    folder.fs.create_dir(folder.staging, recursive=True)
    pq.write_table(pa.table({rows.ROW: [0, 1]}), f"{folder.staging}/a.parquet")
    assert parts.written_rows(folder) == 2 and not (tmp_path / "scored").exists()
    folder.commit()
    assert [p.name for p in (tmp_path / "scored").iterdir()] == ["a.parquet"]
    assert not (tmp_path / ".scored.partial").exists()
    with pytest.raises(DataError, match="it exists; pass --overwrite"):
        parts.Folder.of(str(tmp_path / "scored") + "/")


def test_progress_counts_what_the_actors_have_written_skipping_a_file_half_written(tmp_path):
    folder = parts.Folder.of(str(tmp_path / "scored") + "/")
    staging = tmp_path / ".scored.partial"
    (staging / parts.FAILED).mkdir(parents=True)
    counted = parts.Counted(folder)
    assert counted() == 0
    pq.write_table(pa.table({"row": range(40)}), staging / "part-0.parquet")
    pq.write_table(pa.table({"row": [7], "error": ["bad"]}), staging / parts.FAILED / "a.parquet")
    (staging / "part-1.parquet").write_bytes(b"PAR1 no footer yet")  # Ray Data's writer mid-file
    assert counted() == 41
    pq.write_table(pa.table({"row": range(40, 100)}), staging / "part-1.parquet")  # now whole
    assert counted() == 101


def test_a_progress_line_comes_while_the_job_runs_from_the_rows_written(monkeypatch, capsys):
    import time

    from pipelines.scoring import job

    monkeypatch.setattr(job, "PROGRESS_EVERY_S", 0.05)
    written = iter([0, 100, 400, 700, 1000] + [1000] * 1000)
    with job.progress(lambda: next(written), 1000, time.perf_counter()):
        time.sleep(0.5)
    lines = capsys.readouterr().out.splitlines()
    assert lines and all(" of 1,000 rows scored (" in line for line in lines), lines
    assert not any(line.startswith("  100 of") for line in lines)  # the first rows seen start the count
