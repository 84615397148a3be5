"""Where `kiln score` writes, without Ray: a local file or an object-store URI (moto's S3 server over real HTTP),
a batch at a time under a hidden temporary name, moved into place only at the end; an existing output is refused
unless --overwrite."""

from __future__ import annotations

import os

import pandas as pd
import pyarrow.parquet as pq
import pytest

from pipelines.errors import ConfigError, DataError
from pipelines.scoring.output import Target

from tests_support import S3_CREDENTIALS, bucket_uri


def batches():
    return [pd.DataFrame({"row": [0, 1], "prediction": ["a", "b"]}), pd.DataFrame({"row": [2], "prediction": ["c"]})]


@pytest.mark.parametrize("name", ["scored.parquet", "scored.csv"])
def test_a_local_output_appears_whole_only_when_committed(tmp_path, name):
    target = Target.of(str(tmp_path / "out" / name))
    with target.writer() as writer:
        for batch in batches():
            writer.write(batch)
    assert not (tmp_path / "out" / name).exists() and (tmp_path / "out" / f".{name}.partial").exists()
    target.commit()
    read = pd.read_parquet if name.endswith(".parquet") else pd.read_csv
    assert read(tmp_path / "out" / name).to_dict("list") == {"row": [0, 1, 2], "prediction": ["a", "b", "c"]}
    assert not (tmp_path / "out" / f".{name}.partial").exists()


def test_an_existing_output_is_refused_unless_overwrite(tmp_path):
    (tmp_path / "scored.csv").write_text("row\n")
    with pytest.raises(DataError, match=r"--output .*scored.csv: it exists; pass --overwrite to replace it"):
        Target.of(str(tmp_path / "scored.csv"))
    assert Target.of(str(tmp_path / "scored.csv"), overwrite=True).format == "csv"
    with pytest.raises(ConfigError, match=r"--output .*scored.json: end it in .parquet or .csv"):
        Target.of(str(tmp_path / "scored.json"))
    with pytest.raises(ConfigError, match=r"--output: unsupported scheme ftp://"):
        Target.of("ftp://host/scored.parquet")


def test_an_empty_output_is_still_a_file_with_the_row_column(tmp_path):
    target = Target.of(str(tmp_path / "none.parquet"))
    with target.writer():
        pass
    target.commit()
    assert pq.read_table(tmp_path / "none.parquet").column_names == ["row"]


def test_an_object_store_output_is_written_through_the_bucket(s3_endpoint, monkeypatch):
    for key, value in S3_CREDENTIALS.items():
        monkeypatch.setitem(os.environ, key, value)
    uri = bucket_uri(s3_endpoint, "scores/nightly.parquet")
    target = Target.of(uri)
    assert target.shown == "s3://kiln/scores/nightly.parquet"  # no endpoint, no credentials in what is shown
    with target.writer() as writer:
        for batch in batches():
            writer.write(batch)
    assert not target.exists(target.path), "nothing under the final name before the commit"
    target.commit()
    assert not target.exists(target.partial)
    with target.fs.open_input_file(target.path) as stream:
        assert pq.read_table(stream).to_pydict() == {"row": [0, 1, 2], "prediction": ["a", "b", "c"]}
    with pytest.raises(DataError, match="nightly.parquet: it exists"):
        Target.of(uri)
