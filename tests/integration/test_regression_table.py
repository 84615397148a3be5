"""A regression on a table as users bring it (a price; string categories, a yes/no column, missing cells, an id
column) through `kiln run --no-serve` with nothing overridden but the source and the label, then `kiln serve`:
the task is picked from the label, the endpoint and the pyfunc in a fresh process answer prices in the label's
units. One shared run; its trials stream the data through Ray Data to 2 DDP workers (train.cache_shard_mb=0)."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import requests

from pipelines.data import builtin

from tests_support import KILN, ROOT, descendants, outliving, self_signed_certificate, start_run, store_client

pytestmark = pytest.mark.slow

MODEL = "prices"
EPOCHS = 12


@pytest.fixture(scope="module")
def price_run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("prices")
    table = builtin.houses(rows=800, seed=1)
    table.to_csv(folder / "houses.csv", index=False)
    trained = subprocess.run(
        [
            KILN,
            "run",
            "tests/configs/tiny.yaml",
            "--no-serve",
            "--set",
            f"storage.root={folder / 'runs'}",
            "--set",
            f"data.source={folder / 'houses.csv'}",
            "--set",
            "data.label=price",
            "--set",
            f"registry.model_name={MODEL}",
            "--set",
            "tune.num_samples=2",
            # the auto space (weight decay, head, dropout, batch size from the data) with the learning rates written
            "--set",
            "tune.search_space={auto: true, train.lr: {choice: [3.0e-3, 1.0e-2]}}",
            "--set",
            "tune.scheduler.name=fifo",
            "--set",
            "train.num_workers=2",
            "--set",
            "train.cpus_per_worker=0.5",
            "--set",
            f"train.epochs={EPOCHS}",
            "--set",
            "model.hidden=[64, 32]",
            "--set",
            "train.cache_shard_mb=0",
        ],  # over the in-memory cache: Ray Data shards every epoch, DDP
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert trained.returncode == 0, trained.stdout[-3000:] + trained.stderr[-3000:]
    assert "Endpoint:" not in trained.stdout  # --no-serve stops after registering
    # Started as a non-interactive shell's `cmd &` starts it (SIGINT ignored), stopped by SIGINT to it alone;
    # served over HTTPS with a certificate of its own.
    cert, key = self_signed_certificate(folder)
    run = start_run(
        "tests/configs/tiny.yaml",
        folder / "runs",
        "--model",
        f"{MODEL}@champion",
        "--set",
        f"serve.tls_certfile={cert}",
        "--set",
        f"serve.tls_keyfile={key}",
        command_name="serve",
        sigint_ignored=True,
    )
    if run.process.poll() is not None and "Serving until Ctrl-C." not in run.output:
        pytest.fail(f"kiln serve exited with {run.process.returncode}:\n{run.output[-3000:]}")
    yield folder, table, run, trained.stdout
    members = [run.process.pid, *descendants(run.process.pid)]
    assert run.stop(group=False) == 130, run.output[-3000:]
    assert not outliving(members), "a process kiln serve started outlived it"


def test_the_endpoint_serves_https_only_with_its_certificate(price_run):
    _, _, run, _ = price_run
    assert run.url.startswith("https://")
    assert requests.get(f"{run.url}/healthz", timeout=10, verify=run.verify).status_code == 200
    assert f"Endpoint: {run.url}/predict" in run.output
    with pytest.raises(requests.exceptions.SSLError):  # a certificate nobody vouched for is not trusted
        requests.get(f"{run.url}/healthz", timeout=10)
    with pytest.raises(requests.exceptions.ConnectionError):  # and nothing answers in clear on that port
        requests.get(f"http://127.0.0.1:{run.port}/healthz", timeout=10)


def test_the_task_is_picked_from_the_label_and_said(price_run):
    *_, printed = price_run
    assert "note: task regression (data.task: auto; label 'price':" in printed
    assert "search space (auto): train.lr {'choice': [0.003, 0.01]}; train.weight_decay" in printed
    assert "regression; split" in printed and "stream through Ray Data each epoch" in printed
    assert "val_rmse=" in printed and "test_rmse: network" in printed


def test_mlflow_holds_every_regression_metric_beside_the_baseline(price_run):
    _, _, run, _ = price_run
    client = store_client(run.tracking_uri)
    version = client.get_model_version_by_alias(MODEL, "champion")
    assert version.tags["task"] == "regression" and version.tags["test_metric"] == "test_rmse"
    parent = client.get_run(version.tags["run_id"])
    metrics = parent.data.metrics
    for name in ("rmse", "mae", "r2"):
        assert f"test_{name}" in metrics and f"baseline_test_{name}" in metrics
    assert parent.data.params["tune.metric"] == "val_rmse" and parent.data.params["tune.mode"] == "min"
    trial = client.search_runs(
        [parent.info.experiment_id], filter_string=f"tags.kiln.trial_id = '{version.tags['best_trial_id']}'"
    )[0]
    history = client.get_metric_history(trial.info.run_id, "val_rmse")
    assert len(history) == EPOCHS and {"val_mae", "val_r2", "val_loss"} <= set(trial.data.metrics)
    # The network learns the price: far better than predicting the mean, and near the trees.
    assert metrics["test_r2"] > 0.6, metrics
    assert metrics["test_rmse"] < 1.5 * metrics["baseline_test_rmse"], metrics


def test_the_endpoint_answers_prices_for_rows_with_gaps_and_unseen_values(price_run):
    _, table, run, _ = price_run
    rows = [
        {"town": "hills", "rooms": 4, "area_m2": 110.0, "year_built": 1990, "garage": "yes"},
        {"town": "a town never seen", "rooms": 2, "area_m2": None, "year_built": None, "garage": None},
        {"town": None, "rooms": 7, "area_m2": 180.5, "year_built": 2020, "garage": "no"},
    ]
    answer = requests.post(f"{run.url}/predict", json={"instances": rows}, timeout=60, verify=run.verify)
    assert answer.status_code == 200, answer.text
    prices = answer.json()["predictions"]
    assert all(isinstance(p, float) for p in prices)
    low, high = table["price"].min(), table["price"].max()
    assert all(low / 2 < p < high * 2 for p in prices), prices  # in the label's units, not standardised
    assert prices[2] > prices[1]  # 7 large rooms cost more than 2 small ones
    info = requests.get(f"{run.url}/model", timeout=10, verify=run.verify).json()
    assert info["task"] == "regression" and info["labels"] == [] and info["types"]["town"] == "category"
    asked = requests.post(
        f"{run.url}/predict",
        json={"instances": rows, "parameters": {"probabilities": True}},
        timeout=10,
        verify=run.verify,
    )
    assert asked.status_code == 422 and "regression" in asked.json()["detail"]


def test_pyfunc_in_a_fresh_process_predicts_prices_from_read_csv(price_run):
    folder, table, run, _ = price_run
    script = (
        "import json, mlflow, pandas as pd\n"
        f"mlflow.set_tracking_uri({run.tracking_uri!r})\n"
        f"mlflow.set_registry_uri({run.tracking_uri!r})\n"
        f"model = mlflow.pyfunc.load_model('models:/{MODEL}@champion')\n"
        f"frame = pd.read_csv({str(folder / 'houses.csv')!r}).drop(columns='price')\n"
        "print(json.dumps([float(v) for v in model.predict(frame)]))\n"
    )
    loaded = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300, cwd="/")
    assert loaded.returncode == 0, loaded.stderr[-2000:]
    predicted = np.array(json.loads(loaded.stdout.strip().splitlines()[-1]))
    truth = table["price"].to_numpy()
    assert len(predicted) == len(truth) and np.all(np.isfinite(predicted))
    assert 1 - np.sum((predicted - truth) ** 2) / np.sum((truth - truth.mean()) ** 2) > 0.6
    # the endpoint answers the same rows with the same prices: both are the registered candidate (the blend)
    rows = json.loads(table.drop(columns=["price", "listing"]).head(5).to_json(orient="records"))
    served = requests.post(f"{run.url}/predict", json={"instances": rows}, timeout=60, verify=run.verify)
    assert served.json()["predictions"] == pytest.approx(predicted[:5].tolist(), rel=1e-5)


def test_v2_takes_one_named_input_per_column_with_bytes_for_strings(price_run):
    _, _, run, _ = price_run
    rows = [
        {"town": "hills", "rooms": 4, "area_m2": 110.0, "year_built": 1990, "garage": "yes"},
        {"town": None, "rooms": 2, "area_m2": None, "year_built": 1950, "garage": "no"},
    ]
    datatypes = {"town": "BYTES", "rooms": "INT64", "area_m2": "FP64", "year_built": "INT64", "garage": "BYTES"}
    inputs = [
        {"name": name, "shape": [2], "datatype": kind, "data": [r[name] for r in rows]}
        for name, kind in datatypes.items()
    ]
    answer = requests.post(f"{run.url}/v2/models/{MODEL}/infer", json={"inputs": inputs}, timeout=60, verify=run.verify)
    assert answer.status_code == 200, answer.text
    output = answer.json()["outputs"][0]
    expected = requests.post(f"{run.url}/predict", json={"instances": rows}, timeout=60, verify=run.verify)
    expected = expected.json()["predictions"]
    assert output["datatype"] == "FP64" and output["data"] == pytest.approx(expected)
    meta = requests.get(f"{run.url}/v2/models/{MODEL}", timeout=10, verify=run.verify).json()
    assert {i["name"]: i["datatype"] for i in meta["inputs"]} == {
        "town": "BYTES",
        "rooms": "FP64",
        "area_m2": "FP64",
        "year_built": "FP64",
        "garage": "BYTES",
    }


def test_serving_a_model_that_is_not_registered_fails_clearly(price_run):
    folder, *_ = price_run
    out = subprocess.run(
        [KILN, "serve", "--model", "no-such-model@champion", "--set", f"storage.root={folder / 'runs'}"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 1
    assert "registry.alias 'champion' not found for model 'no-such-model'" in out.stderr


def test_validate_reads_the_csv_without_starting_anything(price_run):
    folder, *_ = price_run
    command = [KILN, "validate", "tests/configs/tiny.yaml", "--set", f"data.source={folder / 'houses.csv'}"]
    out = subprocess.run([*command, "--set", "data.label=price"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and "800 rows, 5 features, regression, 4 trials by val_rmse" in out.stdout
    bad = subprocess.run(
        [*command, "--set", "data.label=target"], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert bad.returncode == 2 and "data.label: column 'target' not in data" in bad.stderr
    wrong = subprocess.run(
        [*command, "--set", "data.label=price", "--set", "tune.metric=val_auc"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert wrong.returncode == 2 and "tune.metric: val_auc is a classification metric" in wrong.stderr


def test_the_blend_of_network_and_trees_is_chosen_on_val_and_is_what_answers(price_run):
    """registry.candidates at its default: on this table the blend wins on val (two different model families
    err differently), so the version is the blend, kept with the trees as arrays, and the endpoint answers as it."""
    folder, table, run, printed = price_run
    client = store_client(run.tracking_uri)
    version = client.get_model_version_by_alias(MODEL, "champion")
    assert version.tags["candidate"] == "blend", version.tags
    weight = float(version.tags["blend_weight"])
    assert 0.0 < weight < 1.0
    assert f"registered candidate: blend ({weight:.2f} network) val_rmse=" in printed
    assert "Done: prices v1, the blend (" in printed and "; network " in printed and ", baseline " in printed
    metrics = client.get_run(version.tags["run_id"]).data.metrics
    for name in ("network", "baseline", "blend"):
        assert {f"candidate_{name}_val_rmse", f"candidate_{name}_test_rmse"} <= set(metrics)
    # chosen on val by bagged selection: the blend may sit a little above the better single model on the whole
    # val split, never above the worse one (a convex blend's RMSE is at most the larger of the two)
    singles = [metrics[f"candidate_{name}_val_rmse"] for name in ("network", "baseline")]
    assert metrics["candidate_blend_val_rmse"] <= max(singles)
    assert "(the blend's weight: the mean best of 200 resamples of val)" in printed
    (kept,) = (folder / "runs").rglob("artifacts/checkpoint/baseline")  # in the version, signed with it
    assert sorted(p.name for p in kept.iterdir()) == ["baseline.json", "trees.npz"]
    with np.load(kept / "trees.npz", allow_pickle=False) as arrays:  # plain arrays: nothing to unpickle
        assert len(arrays.files) > 0
    info = requests.get(f"{run.url}/model", timeout=10, verify=run.verify).json()
    assert info["candidate"] == "blend" and info["blend_weight"] == pytest.approx(weight, abs=1e-4)


def test_a_changed_baseline_file_is_refused_like_changed_weights(price_run):
    """Last: it changes the version on disk (the endpoint has already loaded it)."""
    from pipelines.tracking import integrity
    from pipelines.tracking import mlflow_store as stores

    folder, _, run, _ = price_run
    (trees,) = (folder / "runs").rglob("artifacts/checkpoint/baseline/trees.npz")
    data = bytearray(trees.read_bytes())
    data[len(data) // 2] ^= 0xFF
    trees.write_bytes(bytes(data))
    with pytest.raises(integrity.IntegrityError, match=f"{MODEL} v1: its files changed since registration"):
        stores.load_verified(run.tracking_uri, MODEL, 1)
