"""Kiln on the local two-node cluster (`make cluster-up`): same command, a Ray cluster and an MLflow server.

Runs only when KILN_CLUSTER_TESTS=1 (`.ci/run` brings the cluster up, runs these, and tears it down).
"""

from __future__ import annotations

import os

import pytest
import requests
from mlflow import MlflowClient

from tests_support import start_run

pytestmark = [
    pytest.mark.cluster,
    pytest.mark.skipif(
        os.environ.get("KILN_CLUSTER_TESTS") != "1", reason="needs `make cluster-up` and KILN_CLUSTER_TESTS=1"
    ),
]

SERVER = "http://127.0.0.1:5000"
MODEL = "digits-mlp-cluster-test"


@pytest.fixture(scope="module")
def cluster_run(tmp_path_factory):
    run = start_run(
        "configs/cluster.yaml",
        tmp_path_factory.mktemp("cluster") / "storage",
        "--set",
        "tune.num_samples=2",
        "--set",
        "train.epochs=2",
        "--set",
        f"registry.model_name={MODEL}",
    )
    yield run
    assert run.stop() == 130


def test_trials_ran_on_two_nodes(cluster_run):
    client = MlflowClient(SERVER)
    experiment = client.get_experiment_by_name("digits-cluster")
    trials = [r for r in client.search_runs([experiment.experiment_id]) if r.data.tags.get("kiln.kind") == "trial"]
    node_sets = [set(t.data.tags["node_ids"].split(",")) for t in trials if "node_ids" in t.data.tags]
    assert node_sets and max(len(nodes) for nodes in node_sets) == 2, node_sets


def test_model_is_registered_through_the_server_and_served(cluster_run):
    version = MlflowClient(SERVER).get_model_version_by_alias(MODEL, "champion")
    assert float(version.tags["test_accuracy"]) >= 0.8
    row = [[0.0] * 64]
    answer = requests.post(f"{cluster_run.url}/predict", json={"instances": row}, timeout=60)
    assert answer.status_code == 200 and answer.json()["version"] == int(version.version)


def test_jobs_api_refuses_requests_without_the_token():
    answer = requests.get("http://127.0.0.1:8265/api/jobs/", timeout=10)
    assert answer.status_code in (401, 403)


def test_ray_job_submit_runs_the_same_config_and_leaves_other_endpoints_alone(tmp_path, cluster_run):
    """`ray job submit -- kiln run configs/cluster.yaml`: the driver runs on the head node as a Ray job (token
    auth from the environment that cluster.env sets) and registers its model through the tracking server. It
    ends without deleting the endpoint another `kiln run` serves on the same cluster (Kiln stops only what it
    started; `serve.shutdown()` would have deleted every application)."""
    import subprocess
    import sys
    from pathlib import Path

    from tests_support import KILN, ROOT

    model = "digits-mlp-cluster-job"
    ray_cli = str(Path(sys.executable).parent / "ray")
    entrypoint = (
        f"{KILN} run {ROOT / 'configs' / 'cluster.yaml'} --no-serve --set storage.root={tmp_path / 'job'} "
        f"--set tune.num_samples=1 --set train.epochs=1 --set registry.model_name={model}"
    )
    out = subprocess.run(
        [ray_cli, "job", "submit", "--", *entrypoint.split()], capture_output=True, text=True, timeout=600
    )
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert "succeeded" in out.stdout.lower()
    version = MlflowClient(SERVER).get_model_version_by_alias(model, "champion")
    assert float(version.tags["test_accuracy"]) >= 0.5
    answer = requests.post(f"{cluster_run.url}/predict", json={"instances": [[0.0] * 64]}, timeout=60)
    assert answer.status_code == 200, "the other run's endpoint stopped answering"


def test_kiln_score_runs_its_actor_pool_on_the_cluster(tmp_path, cluster_run):
    """`kiln score` with the same config: its actors on the two-node cluster (1 CPU each, as a cluster's free
    CPU must be whole on one node), the version read through the tracking server, every row scored in order as
    the endpoint answers it."""
    import subprocess

    import pandas as pd

    from tests_support import KILN, ROOT

    rows = pd.read_parquet(cluster_run.root / "datasets" / "digits.parquet").drop(columns="label").head(300)
    rows.to_parquet(tmp_path / "rows.parquet")
    out = tmp_path / "scored.parquet"
    command = [
        KILN, "score", f"{MODEL}@champion", str(ROOT / "configs" / "cluster.yaml"),
        "--set", f"storage.root={cluster_run.root}", "--input", str(tmp_path / "rows.parquet"), "--output", str(out),
    ]  # fmt: skip
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert " of 1 CPU, each loading" in done.stdout, done.stdout[-2000:]
    scored = pd.read_parquet(out)
    assert scored["row"].tolist() == list(range(300))
    answer = requests.post(f"{cluster_run.url}/predict", json={"instances": rows.head(50).values.tolist()}, timeout=60)
    assert scored["prediction"].head(50).tolist() == answer.json()["predictions"]
