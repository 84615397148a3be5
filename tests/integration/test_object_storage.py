"""storage.root as an S3 URI: checkpoints go to the bucket (through pyarrow's S3 filesystem, over real
HTTP), only what must be local stays in storage.local_root, and the winner registers from the bucket.
The S3 endpoint is moto's standalone S3-compatible server, the nearest thing to S3 this machine has."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from pipelines.tracking.mlflow_store import scoped

from tests_support import KILN, ROOT, S3_CREDENTIALS, bucket_uri, free_port, kill_mid_search, store_client

pytestmark = pytest.mark.slow


def command(root_uri: str, local_root: Path, *extra: str) -> list[str]:
    return [
        KILN,
        "run",
        "tests/configs/tiny.yaml",
        "--no-serve",
        "--set",
        f"storage.root={root_uri}",
        "--set",
        f"storage.local_root={local_root}",
        "--set",
        "registry.model_name=kiln-s3-test",
        "--set",
        "tune.num_samples=3",
        "--set",
        "train.epochs=2",
        "--set",
        "train.num_workers=1",
        "--set",
        "tune.search_space={train.lr: {choice: [1.0e-2, 3.0e-3, 1.0e-3]}}",
        *extra,
    ]


def kiln_run(root_uri: str, local_root: Path, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        command(root_uri, local_root, *extra),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, **S3_CREDENTIALS},
    )


def test_checkpoints_live_in_the_bucket_and_the_winner_registers_from_it(s3_endpoint, tmp_path):
    import mlflow
    import pandas as pd
    import pyarrow.fs
    import pyarrow.parquet

    out = kiln_run(bucket_uri(s3_endpoint, "runs"), tmp_path / "local")
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]

    fs, _ = pyarrow.fs.FileSystem.from_uri(bucket_uri(s3_endpoint, "runs"))
    files = [
        i.path
        for i in fs.get_file_info(pyarrow.fs.FileSelector("kiln/runs/ray", recursive=True))
        if i.type == pyarrow.fs.FileType.File
    ]
    trained = {p.split("/")[3] for p in files if p.endswith("/model.pt")}
    assert len(trained) == 1, f"only the registered winner keeps checkpoints in the bucket: {trained}"
    assert any("/kiln-test-" in p for p in files), "Tune's experiment state is in the bucket too (for --resume)"
    local = tmp_path / "local"
    assert not (local / "ray").exists(), "no trial wrote checkpoints to the local folder"
    assert [p.parent.parent.name for p in local.rglob("model.pt") if "mlartifacts" not in p.parts] == ["fetched"]

    store = f"sqlite:///{local / 'mlflow.db'}"
    assert str(store_client(store).get_model_version_by_alias("kiln-s3-test", "champion").version) == "1"
    rows = pd.read_parquet(local / "datasets" / "digits.parquet").drop(columns="label").head(8)
    with scoped(store):  # as a user's own process would, pointed at this store
        predictions = mlflow.pyfunc.load_model("models:/kiln-s3-test@champion").predict(rows)
    assert len(predictions) == 8

    # kiln score reads its input from the bucket too (Ray Data's parquet reader, the URI's query options included)
    many = pd.read_parquet(local / "datasets" / "digits.parquet").drop(columns="label").head(300)
    signed = pyarrow.fs.S3FileSystem(  # the test's own writes signed, as kiln's are (S3_CREDENTIALS)
        access_key="kiln-test", secret_key="kiln-test", endpoint_override=s3_endpoint, scheme="http", region="us-east-1"
    )
    pyarrow.parquet.write_table(pyarrow.Table.from_pandas(many), "kiln/to-score/rows.parquet", filesystem=signed)
    out = tmp_path / "scored.parquet"
    score = [
        KILN, "score", "kiln-s3-test@champion", "tests/configs/tiny.yaml",
        "--set", f"storage.root={bucket_uri(s3_endpoint, 'runs')}", "--set", f"storage.local_root={local}",
        "--input", bucket_uri(s3_endpoint, "to-score/rows.parquet"), "--output", str(out),
    ]  # fmt: skip
    done = subprocess.run(
        score, cwd=ROOT, capture_output=True, text=True, timeout=300, env={**os.environ, **S3_CREDENTIALS}
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "scored 300 of 300 rows" in done.stdout
    scored = pd.read_parquet(out)
    assert scored["row"].tolist() == list(range(300))
    assert scored["prediction"].head(8).tolist() == list(predictions)

    # and into a folder in the bucket: Ray Data's writer, the parts moved into place object by object
    score[score.index("--output") + 1] = bucket_uri(s3_endpoint, "scored-parts/")
    done = subprocess.run(
        score, cwd=ROOT, capture_output=True, text=True, timeout=300, env={**os.environ, **S3_CREDENTIALS}
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    listed = signed.get_file_info(pyarrow.fs.FileSelector("kiln", recursive=True))
    names = [f.path for f in listed if f.type == pyarrow.fs.FileType.File]
    assert not [n for n in names if ".scored-parts.partial" in n]  # the staging objects are gone
    written = [n for n in names if n.startswith("kiln/scored-parts/")]
    parts = pd.concat([pd.read_parquet(n, filesystem=signed) for n in written]).sort_values("row", ignore_index=True)
    pd.testing.assert_frame_equal(parts, scored, check_dtype=False)


def test_a_search_killed_mid_way_resumes_from_the_bucket(s3_endpoint, tmp_path):
    """The ledger and Tune's state are in the bucket, beside the checkpoints: --resume reads them from there."""
    uri, local = bucket_uri(s3_endpoint, "resume"), tmp_path / "local"
    # 2 workers a trial, so trials run one after another and the kill lands mid-search.
    search = [
        "--set",
        "tune.scheduler.name=fifo",
        "--set",
        "registry.model_name=kiln-s3-resume",
        "--set",
        "train.num_workers=2",
        "--set",
        "train.cpus_per_worker=0.5",
    ]
    kill_mid_search(command(uri, local, *search), epochs=2, env=S3_CREDENTIALS)
    assert not (local / "searches").exists(), "the ledger is in the bucket, not on this machine"
    resumed = kiln_run(uri, local, "--resume", *search)
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    assert "resuming search kiln-test-" in resumed.stdout
    assert store_client(f"sqlite:///{local / 'mlflow.db'}").get_model_version_by_alias("kiln-s3-resume", "champion")


def test_an_unreachable_bucket_fails_before_anything_starts(tmp_path):
    dead = f"127.0.0.1:{free_port()}"
    out = kiln_run(bucket_uri(dead, "runs"), tmp_path / "local")
    assert out.returncode == 2
    assert out.stderr.strip().splitlines()[-1].startswith("kiln: error: storage.root: cannot write to s3://kiln/runs")
    assert not (tmp_path / "local" / "mlflow.db").exists(), "no MLflow run was started"
