"""The walking skeleton end to end: one `kiln run` of a quickstart-shaped search, checked from outside.

Everything here is real: a local Ray runtime, an MLflow SQLite store, Ray Serve answering over HTTP.
The run is shared (session fixture `live_run`); the last test stops it with Ctrl-C.
"""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import requests
from mlflow import MlflowClient

from tests_support import KILN, ROOT, descendants, outliving

pytestmark = pytest.mark.slow

MODEL = "kiln-test-mlp"
NUM_TRIALS = 4
MAX_EPOCHS = 4


@pytest.fixture(scope="module")
def mlflow_client(live_run):
    return MlflowClient(tracking_uri=live_run.tracking_uri, registry_uri=live_run.tracking_uri)


@pytest.fixture(scope="module")
def runs(live_run, mlflow_client):
    experiment = mlflow_client.get_experiment_by_name("kiln-test")
    every = mlflow_client.search_runs([experiment.experiment_id], max_results=100)
    parents = [r for r in every if r.data.tags.get("kiln.kind") == "search"]
    assert len(parents) == 1
    parent = parents[0]
    trials = [r for r in every if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    return parent, trials


@pytest.fixture(scope="module")
def digits_rows(live_run):
    frame = pd.read_parquet(live_run.root / "datasets" / "digits.parquet")
    return frame.drop(columns="label").sample(40, random_state=1)


def test_run_prints_each_stage_the_endpoint_and_the_ui_command(live_run):
    for stage in ("ingest", "search", "evaluate", "register", "serve"):
        assert re.search(rf"^✓ {stage}\s+[\d.]+ s$", live_run.output, re.M), stage
    assert f"{MODEL} v1 registered; alias 'champion' -> v1" in live_run.output
    assert "kiln ui tests/configs/tiny.yaml --set storage.root=" in live_run.output
    assert re.search(r"^Sample answer \(200\): \{\"predictions\"", live_run.output, re.M)
    assert "INFO" not in live_run.output, "Ray's own logging leaks into the terminal"


def test_trials_table_lists_every_trial(live_run):
    rows = re.findall(r"^[* ] (\w+_\d+)\s+(\d+)\s+(\d+)\s+([\d.]+)\s+(yes|no)\s", live_run.output, re.M)
    assert len(rows) == NUM_TRIALS


def test_parent_run_has_one_nested_run_per_trial(runs, mlflow_client):
    parent, trials = runs
    assert parent.info.status == "FINISHED"
    assert f"{NUM_TRIALS} trials (" in parent.data.tags["mlflow.note.content"]  # the UI's run description
    assert len(trials) == NUM_TRIALS
    for trial in trials:
        assert "train.lr" in trial.data.params and "model.hidden" in trial.data.params
        assert trial.data.tags.get("node_ids")  # the Ray nodes its workers ran on
        history = mlflow_client.get_metric_history(trial.info.run_id, "val_accuracy")
        assert [m.step for m in history] == list(range(1, len(history) + 1))
        assert {"train_loss", "val_loss", "val_accuracy", "epoch_time_s"} <= set(trial.data.metrics)
    artifacts = [a.path for a in mlflow_client.list_artifacts(parent.info.run_id)]
    assert "config.yaml" in artifacts


def test_runs_record_the_splits_they_were_trained_and_scored_on(runs, mlflow_client):
    parent, trials = runs

    def contexts(run) -> dict[str, tuple[str, int]]:
        inputs = mlflow_client.get_run(run.info.run_id).inputs.dataset_inputs
        return {
            next(t.value for t in i.tags if t.key == "mlflow.data.context"): (
                i.dataset.digest,
                json.loads(i.dataset.profile)["num_rows"],
            )
            for i in inputs
        }

    splits = contexts(parent)
    assert set(splits) == {"train", "val", "test"}
    assert sum(rows for _, rows in splits.values()) == 1797  # digits, every row once
    for trial in trials:
        assert contexts(trial) == {k: splits[k] for k in ("train", "val")}  # the same digests


def test_asha_stopped_at_least_one_trial_early(runs):
    _, trials = runs
    epochs = sorted(int(t.data.tags["kiln.epochs_run"]) for t in trials)
    assert epochs[0] < MAX_EPOCHS, epochs
    assert epochs[-1] == MAX_EPOCHS, epochs


def test_registered_version_carries_the_alias_and_reaches_090_on_test(runs, mlflow_client):
    parent, _ = runs
    version = mlflow_client.get_model_version_by_alias(MODEL, "champion")
    assert int(version.version) == 1
    assert float(version.tags["test_accuracy"]) >= 0.9
    # the version's score is that of the candidate registry.candidates registered (the network's is test_accuracy)
    registered = parent.data.metrics[f"candidate_{version.tags['candidate']}_test_accuracy"]
    assert registered == pytest.approx(float(version.tags["test_accuracy"]), abs=1e-6)
    assert parent.data.tags["kiln.candidate"] == version.tags["candidate"]
    assert version.tags["run_id"] == parent.info.run_id
    assert len(version.tags["data_fingerprint"]) == 16


def test_pyfunc_in_a_fresh_process_predicts_what_the_endpoint_answers(live_run, digits_rows):
    script = (
        "import json, sys, mlflow, pandas as pd\n"
        f"mlflow.set_tracking_uri({live_run.tracking_uri!r})\n"
        f"model = mlflow.pyfunc.load_model('models:/{MODEL}@champion')\n"
        "frame = pd.read_json(sys.stdin, orient='split')\n"
        "print(json.dumps([int(v) for v in model.predict(frame)]))\n"
    )
    loaded = subprocess.run(
        [sys.executable, "-c", script],
        input=digits_rows.to_json(orient="split"),
        capture_output=True,
        text=True,
        timeout=300,
        cwd="/",
    )
    assert loaded.returncode == 0, loaded.stderr[-2000:]
    from_pyfunc = json.loads(loaded.stdout.strip().splitlines()[-1])

    answer = requests.post(f"{live_run.url}/predict", json={"instances": digits_rows.to_numpy().tolist()}, timeout=60)
    assert answer.status_code == 200
    body = answer.json()
    assert body["predictions"] == from_pyfunc
    assert (body["model"], body["version"]) == (MODEL, 1)


def test_rows_by_feature_name_match_rows_by_position(live_run, digits_rows):
    by_name = requests.post(f"{live_run.url}/predict", json={"instances": digits_rows.head(5).to_dict("records")})
    by_position = requests.post(f"{live_run.url}/predict", json={"instances": digits_rows.head(5).to_numpy().tolist()})
    assert by_name.status_code == 200
    assert by_name.json()["predictions"] == by_position.json()["predictions"]


def test_health_and_bad_requests(live_run):
    health = requests.get(f"{live_run.url}/healthz", timeout=10).json()
    assert health == {"status": "ok", "model": MODEL, "version": 1}
    bad = requests.post(f"{live_run.url}/predict", json={"instances": [[1, 2, 3]]}, timeout=10)
    assert bad.status_code == 422 and "expected 64 features, got 3" in bad.json()["detail"]
    assert requests.post(f"{live_run.url}/predict", json={"instances": []}, timeout=10).status_code == 422


def test_printed_curl_example_works_when_pasted(live_run):
    line = next(line for line in live_run.lines if line.strip().startswith("curl "))
    out = subprocess.run(shlex.split(line.strip()), capture_output=True, text=True, timeout=30)
    assert json.loads(out.stdout)["predictions"]


def test_endpoint_binds_to_loopback_only(live_run):
    printed = next(line for line in live_run.lines if line.startswith("Endpoint:")).split()[1]
    assert printed == f"http://127.0.0.1:{live_run.port}/predict", printed  # the URL kiln tells the user
    listening = subprocess.run(["ss", "-ltnH"], capture_output=True, text=True).stdout
    addresses = [cols.split()[3] for cols in listening.splitlines() if cols.split()[3].endswith(f":{live_run.port}")]
    assert addresses and all(a.startswith("127.0.0.1:") for a in addresses), addresses


def test_bad_config_exits_2_with_one_line_and_starts_nothing(tmp_path):
    root = tmp_path / "never-created"
    out = subprocess.run(
        [KILN, "run", "configs/quickstart.yaml", "--set", f"storage.root={root}", "--set", "train.num_workers=0"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 2
    assert out.stderr.strip().splitlines() == [
        "kiln: error: configs/quickstart.yaml: train.num_workers: Input should be greater than 0 (got 0)"
    ]
    assert not root.exists()


def test_run_folder_keeps_only_the_winners_checkpoints(live_run):
    """Stopped and losing trials' checkpoints are pruned after registering; the folder stays bounded:
    about 5 MiB fixed (dataset, MLflow store, the registered model) plus well under 1 MiB a trial."""
    from pipelines.cluster.storage import folder_bytes

    weights = list((live_run.root / "ray").rglob("model.pt"))  # <trial's folder>/checkpoint_*/model.pt
    assert len({w.parent.parent for w in weights}) == 1
    assert len(weights) <= 2  # train.keep_checkpoints
    assert folder_bytes(live_run.root) < (10 + NUM_TRIALS) * 2**20


def test_run_leaves_an_html_report_that_kiln_report_rebuilds(live_run, runs, mlflow_client):
    parent, _ = runs
    match = re.search(r"^  report: (\S+\.html)$", live_run.output, re.M)
    assert match, "no report path printed"
    page = Path(match.group(1)).read_text()
    assert page.count('src="data:image/png;base64,') == 5  # trials, trial order, confusion matrix, ROC, stages
    assert "stopped early" in page and parent.data.tags["kiln.best_trial_id"] in page
    artifacts = [a.path for a in mlflow_client.list_artifacts(parent.info.run_id)]
    assert Path(match.group(1)).name in artifacts
    rebuilt = subprocess.run(
        [KILN, "report", parent.info.run_id, "--set", f"storage.root={live_run.root}"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert rebuilt.returncode == 0, rebuilt.stderr
    assert rebuilt.stdout.strip() == f"report: {match.group(1)}"


def test_runs_and_models_tables(live_run, runs):
    parent, _ = runs
    store = ["--set", f"storage.root={live_run.root}"]
    listed = subprocess.run([KILN, "runs", *store], cwd=ROOT, capture_output=True, text=True, timeout=120)
    line = next(line for line in listed.stdout.splitlines() if parent.info.run_id in line)
    assert "finished" in line and f"{MODEL} v1" in line and "val_accuracy=" in line
    models = subprocess.run([KILN, "models", *store], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert re.search(rf"^{MODEL}\s+1\s+champion=v1\s+v1 accuracy=0\.9", models.stdout, re.M), models.stdout
    assert "accuracy=0.9" in line  # the runs table's test column names its metric


def test_ctrl_c_stops_serving_cleanly(live_run):
    """Last in the file: stops the shared run. Its own process tree (the Ray runtime it started among it) is read
    before the stop, so another Ray on the machine cannot fail or pass this."""
    members = descendants(live_run.process.pid)
    assert members, "kiln run started no runtime of its own"
    assert live_run.stop() == 130, live_run.output[-2000:]  # 128 + SIGINT
    assert "shutting down the endpoint" in live_run.output
    with pytest.raises(requests.ConnectionError):
        requests.get(f"{live_run.url}/healthz", timeout=5)
    assert not outliving(members), "a process kiln run started outlived it"
