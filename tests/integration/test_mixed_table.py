"""A table as users bring it (string categories, yes/no answers, missing cells, an id column) through `kiln run`
to the endpoint and to the pyfunc in a fresh process; one shared run.

Its validation accuracy ties from epoch 1 on (the label is a line through one column), so it is also the
regression test of issue 15: the run must register the later of the tied epochs, whose checkpoint Ray kept,
not the first (deleted: train.keep_checkpoints=1).
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import requests

from tests_support import KILN, ROOT, descendants, outliving, start_run, store_client, supervised

pytestmark = pytest.mark.slow

EPOCHS = 4
MODEL = "mixed"


NOTES = [
    "called about the {thing} on {day} and asked for {what}",
    "wrote in {day} morning: the {thing} is {what}",
    "no reply yet about the {thing}, {what} promised by {day}",
]


def free_text(rng: np.random.Generator, rows: int) -> list[str | None]:
    """Free-form notes, a tenth missing: a text column that says nothing about the answer."""
    fill = {
        "thing": ["invoice", "parcel", "refund", "login"],
        "day": ["monday", "friday", "sunday"],
        "what": ["a callback", "late", "a discount", "fixed"],
    }
    notes = [
        rng.choice(NOTES).format(**{k: rng.choice(v) for k, v in fill.items()}) + f" (ticket {i})" for i in range(rows)
    ]
    return [None if rng.random() < 0.1 else note for note in notes]


def mixed_table(rows: int = 400) -> pd.DataFrame:
    """`answer` is decided by `signal` alone; every other column is noise of a kind real tables hold."""
    rng = np.random.default_rng(0)
    side = rng.integers(0, 2, rows)
    signal = np.where(side == 1, 5.0, -5.0) + rng.normal(0, 0.3, rows)
    noise = rng.normal(0, 1, rows)
    noise[rng.random(rows) < 0.2] = np.nan  # missing cells in a number column
    town = rng.choice(["north", "south", "east", "west", None], rows)
    smoker = rng.choice(["yes", "no", None], rows)
    return pd.DataFrame(
        {
            "customer_id": [f"c-{i:05d}" for i in range(rows)],
            "signal": signal,
            "noise": noise,
            "town": town,
            "smoker": smoker,
            "note": free_text(rng, rows),
            "answer": np.where(side == 1, "yes", "no"),
        }
    )


@pytest.fixture(scope="module")
def mixed_run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("mixed")
    table = mixed_table()
    table.to_csv(folder / "table.csv", index=False)
    run = start_run(
        "tests/configs/tiny.yaml",
        folder / "runs",
        "--set",
        f"data.source={folder / 'table.csv'}",
        "--set",
        "data.label=answer",
        "--set",
        "data.split={val: 0.05, test: 0.1, seed: 0}",
        "--set",
        f"registry.model_name={MODEL}",
        "--set",
        "tune.num_samples=1",
        "--set",
        "tune.search_space={}",
        "--set",
        "tune.scheduler.name=fifo",
        "--set",
        "train.num_workers=1",
        "--set",
        "train.cpus_per_worker=1",
        "--set",
        f"train.epochs={EPOCHS}",
        "--set",
        "train.lr=1.0e-2",
        "--set",
        "train.keep_checkpoints=1",
        # town's 4 values are more than 3: embedded (data.categories auto), not one-hot
        "--set",
        "data.max_categories=3",
        # the text column gets its own encoder (the model's default is the bag of words)
        "--set",
        "model.columns.note={text_encoder: transformer, embedding_dim: 16, text_heads: 2, text_layers: 1}",
    )
    if run.process.poll() is not None and "Serving until Ctrl-C." not in run.output:
        pytest.fail(f"kiln run exited with {run.process.returncode}:\n{run.output[-3000:]}")
    yield folder, table, run
    run.stop()


def test_the_run_registers_the_checkpoint_ray_kept(mixed_run):
    folder, _, run = mixed_run
    client = store_client(run.tracking_uri)
    version = client.get_model_version_by_alias(MODEL, "champion")
    trial_run = client.search_runs(
        [client.get_run(version.tags["run_id"]).info.experiment_id],
        filter_string=f"tags.kiln.trial_id = '{version.tags['best_trial_id']}'",
    )[0]
    history = [
        m.value for m in sorted(client.get_metric_history(trial_run.info.run_id, "val_accuracy"), key=lambda m: m.step)
    ]
    assert len(history) == EPOCHS and history[0] == max(history) == history[-1], history  # the tie, as set up
    assert version.tags["best_epoch"] == str(EPOCHS)  # the later of the tied epochs: the one Ray kept
    assert Path(version.tags["checkpoint"], "kiln.json").exists()
    assert f"epoch {EPOCHS}: val_accuracy=1.0000" in run.output
    row = next(line for line in run.lines if line.startswith("* "))
    assert row.split()[2:4] == [str(EPOCHS), str(EPOCHS)], row  # the trials table: epochs run, best epoch


def test_the_text_column_and_the_embedded_category_train_and_serve_with_their_own_encoders(mixed_run):
    import torch

    _, _, run = mixed_run
    checkpoint = Path(store_client(run.tracking_uri).get_model_version_by_alias(MODEL, "champion").tags["checkpoint"])
    assert (
        json.loads((checkpoint / "kiln.json").read_text())["model"]["columns"]["note"]["text_encoder"] == "transformer"
    )
    weights = torch.load(checkpoint / "model.pt", weights_only=True)
    assert any(".encoder.layers.0.self_attn." in key for key in weights)  # a Transformer, 16 wide
    assert weights["encoders.1.words.weight"].shape[1] == 16
    assert weights["encoders.0.table.weight"].shape[0] == 6  # town embedded: its 4 values, missing and other
    assert "note: column 'town' (4 values) is embedded" in run.output
    # the endpoint rebuilt it from the version's files (test_the_endpoint_takes_strings... sends it text)


def test_the_id_column_is_left_out_and_said(mixed_run):
    _, _, run = mixed_run
    assert "note: column 'customer_id' excluded: an identifier (400 distinct values in 400 rows)" in run.output
    assert "5 features (" in run.output  # signal, noise, town, smoker, note


def test_a_run_on_other_data_is_named_after_it(mixed_run):
    _, _, run = mixed_run
    assert "run named 'table' after data.source (set name=... to choose another)" in run.output
    assert store_client(run.tracking_uri).get_experiment_by_name("table") is not None  # not tiny.yaml's kiln-test


def test_the_endpoint_takes_strings_nulls_and_unseen_values(mixed_run):
    _, table, run = mixed_run
    rows = [
        {"signal": 5.1, "noise": None, "town": "north", "smoker": "yes", "note": "asked about the refund"},
        {"signal": -4.9, "noise": 0.3, "town": "a town never seen", "smoker": None, "note": None},
        {"signal": 4.8, "noise": 1.0, "town": None, "smoker": "maybe", "note": "words never seen: zyx qwv"},
    ]
    answer = requests.post(f"{run.url}/predict", json={"instances": rows}, timeout=60)
    assert answer.status_code == 200, answer.text
    assert answer.json()["predictions"] == ["yes", "no", "yes"]
    positional = requests.post(f"{run.url}/predict", json={"instances": [list(r.values()) for r in rows]}, timeout=60)
    assert positional.json()["predictions"] == ["yes", "no", "yes"]
    info = requests.get(f"{run.url}/model", timeout=10).json()
    assert info["types"] == {
        "signal": "number",
        "noise": "number",
        "town": "category",
        "smoker": "binary",
        "note": "text",
    }
    bad = requests.post(f"{run.url}/predict", json={"instances": [["high", 0.0, "north", "yes", "a note"]]}, timeout=10)
    assert bad.status_code == 422 and "(signal): expected a number, got 'high'" in bad.json()["detail"]


def test_pyfunc_in_a_fresh_process_takes_the_file_as_read_csv_gives_it(mixed_run):
    folder, table, run = mixed_run
    script = (
        "import json, sys, mlflow, pandas as pd\n"
        f"mlflow.set_tracking_uri({run.tracking_uri!r})\n"
        f"mlflow.set_registry_uri({run.tracking_uri!r})\n"
        f"model = mlflow.pyfunc.load_model('models:/{MODEL}@champion')\n"
        f"frame = pd.read_csv({str(folder / 'table.csv')!r}).drop(columns='answer')\n"
        "asked = model.predict(frame.head(3), params={'probabilities': True})\n"
        "print(json.dumps(asked.to_dict(orient='list')))\n"
        "print(json.dumps(list(model.predict(frame))))\n"
    )
    loaded = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300, cwd="/")
    assert loaded.returncode == 0, loaded.stderr[-2000:]
    *_, asked, plain = loaded.stdout.strip().splitlines()
    predictions = json.loads(plain)
    assert np.mean(np.array(predictions) == table["answer"].to_numpy()) > 0.95
    asked = json.loads(asked)  # the label and each class's probability
    assert set(asked) == {"prediction", "probability_no", "probability_yes"} and asked["prediction"] == predictions[:3]
    assert all(abs(n + y - 1) < 1e-5 for n, y in zip(asked["probability_no"], asked["probability_yes"], strict=True))


def test_validate_prints_the_schema_it_inferred(mixed_run):
    folder, _, _ = mixed_run
    out = subprocess.run(
        [
            KILN,
            "validate",
            "tests/configs/tiny.yaml",
            "--set",
            f"data.source={folder / 'table.csv'}",
            "--set",
            "data.label=answer",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    rows = {line.split()[0]: line.split()[1:3] for line in out.stdout.splitlines()[2:] if line.split()}
    assert rows["customer_id"] == ["-", "0"] and rows["town"][0] == "category" and rows["smoker"][0] == "binary"
    assert rows["noise"][0] == "number" and int(rows["noise"][1]) > 0 and rows["answer"][0] == "-"
    assert rows["note"][0] == "text" and int(rows["note"][1]) > 0  # free-form strings, a tenth missing
    wrong = subprocess.run(
        [
            KILN,
            "validate",
            "tests/configs/tiny.yaml",
            "--set",
            f"data.source={folder / 'table.csv'}",
            "--set",
            "data.label=answer",
            "--set",
            "model.columns.town.text_encoder=transformer",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert wrong.returncode == 2
    assert (
        "model.columns.town: a category column; encoder settings apply to text and image columns (note)" in wrong.stderr
    )


def test_v2_takes_a_text_column_as_bytes(mixed_run):
    _, _, run = mixed_run
    meta = requests.get(f"{run.url}/v2/models/{MODEL}", timeout=10).json()
    assert {i["name"]: i["datatype"] for i in meta["inputs"]}["note"] == "BYTES"
    columns = {
        "signal": ("FP64", [5.0, -5.0]),
        "noise": ("FP64", [None, 0.1]),
        "town": ("BYTES", ["east", "west"]),
        "smoker": ("BYTES", ["no", "yes"]),
        "note": ("BYTES", ["called about the parcel", None]),
    }
    body = {"inputs": [{"name": n, "datatype": t, "shape": [2], "data": d} for n, (t, d) in columns.items()]}
    answer = requests.post(f"{run.url}/v2/models/{MODEL}/infer", json=body, timeout=60)
    assert answer.status_code == 200, answer.text
    assert answer.json()["outputs"][0]["data"] == ["yes", "no"]


def score(folder: Path, *extra: str) -> subprocess.CompletedProcess:
    command = [
        KILN,
        "score",
        f"{MODEL}@champion",
        "tests/configs/tiny.yaml",
        "--set",
        f"storage.root={folder / 'runs'}",
    ]
    return subprocess.run([*command, *extra], cwd=ROOT, capture_output=True, text=True, timeout=300)


def test_kiln_score_writes_every_row_in_order_and_the_bad_one_beside_it(mixed_run):
    """The same table, a bad cell in row 7, through `kiln score` on Ray Data (its own runtime beside the run's):
    rows out in input order with their numbers and ids, the bad row in the errors file, exit 3, an MLflow run."""
    folder, table, run = mixed_run
    table = table.astype({"signal": object})
    table.loc[7, "signal"] = "five"
    table.to_csv(folder / "to-score.csv", index=False)
    out = folder / "scored.parquet"
    done = score(
        folder, "--input", str(folder / "to-score.csv"), "--output", str(out),
        "--set", "score.probabilities=true", "--set", "score.batch_size=64",  # score.keep: the identifier, by default
    )  # fmt: skip
    assert done.returncode == 3, done.stdout[-2000:] + done.stderr[-2000:]
    assert f"scored {len(table) - 1} of {len(table)} rows" in done.stdout
    pool = rf"scoring with {MODEL} v1: \d+ actors? of [\d.]+ CPU, each loading the version first"
    assert re.search(pool, done.stdout)
    assert " 0 of " not in done.stdout  # a progress line counts the batch it follows
    scored = pd.read_parquet(out)
    assert scored["row"].tolist() == [i for i in range(len(table)) if i != 7]  # in input order, nothing lost
    assert scored["customer_id"].tolist() == table["customer_id"].drop(index=7).tolist()
    truth = table["answer"].drop(index=7).to_numpy()
    assert (scored["prediction"].to_numpy() == truth).mean() > 0.95
    assert np.allclose(scored["probability_yes"] + scored["probability_no"], 1.0)
    errors = pd.read_parquet(folder / "scored.parquet.errors.parquet")
    assert errors.to_dict("records") == [{"row": 7, "error": "column 'signal': 'five' is not a number"}]
    client = store_client(run.tracking_uri)
    version = client.get_model_version_by_alias(MODEL, "champion")
    experiment = client.get_run(version.run_id).info.experiment_id  # the scored version's own experiment
    (job,) = client.search_runs([experiment], filter_string="tags.`kiln.kind` = 'score'")
    assert job.data.metrics["rows_in"] == len(table) and job.data.metrics["rows_failed"] == 1
    assert job.data.params["output"] == str(out)


def test_kiln_score_into_a_folder_writes_part_files_with_ray_datas_writer(mixed_run):
    """`--output DIR/`: Ray Data's writer writes the part files where the actors run, each row numbered by the
    reads planned from the footers (row groups of 100 rows), the bad row in DIR.errors.parquet; every other row
    once, with its id and the version's answer, and no staging folder left."""
    folder, table, _ = mixed_run
    cells = table["signal"].map(lambda v: None if pd.isna(v) else repr(float(v))).astype(object)
    cells[7] = "five"
    table.assign(signal=cells).to_parquet(folder / "to-score.parquet", row_group_size=100)
    parts = folder / "parts"
    args = ["--input", str(folder / "to-score.parquet"), "--output", f"{parts}/", "--set", "score.batch_size=64"]
    done = score(folder, *args)
    assert done.returncode == 3, done.stdout[-2000:] + done.stderr[-2000:]
    assert f"scored {len(table) - 1} of {len(table)} rows" in done.stdout
    written = pd.read_parquet(parts).sort_values("row", ignore_index=True)
    assert written["row"].tolist() == [i for i in range(len(table)) if i != 7]  # each row once, nothing lost
    assert written["customer_id"].tolist() == table["customer_id"].drop(index=7).tolist()
    assert (written["prediction"].to_numpy() == table["answer"].drop(index=7).to_numpy()).mean() > 0.95
    errors = pd.read_parquet(folder / "parts.errors.parquet")
    assert errors.to_dict("records") == [{"row": 7, "error": "column 'signal': 'five' is not a number"}]
    assert not [p.name for p in folder.iterdir() if p.name.startswith(".parts")]  # the staging folder is gone
    again = score(folder, *args)
    assert again.returncode == 2 and "it exists; pass --overwrite" in again.stderr


def test_kiln_score_refuses_a_table_without_a_feature_and_writes_nothing(mixed_run):
    folder, table, _ = mixed_run
    table.drop(columns=["noise"]).to_parquet(folder / "no-noise.parquet")
    out = folder / "never.csv"
    done = score(folder, "--input", str(folder / "no-noise.parquet"), "--output", str(out))
    assert done.returncode == 2
    assert "no column 'noise', a feature of this model" in done.stderr
    assert not out.exists() and not list(folder.glob("*never*"))


def test_kiln_score_stopped_with_ctrl_c_leaves_no_output_and_nothing_running(mixed_run):
    """Ctrl-C (SIGINT to the process group) while the actors load and score 200k rows: exit 130, and neither the
    output, its temporary file nor an errors file is left, nor any process the job started."""
    folder, table, _ = mixed_run
    many = pd.concat([table] * (200_000 // len(table) + 1), ignore_index=True)
    many.astype({"signal": "float64"}).to_parquet(folder / "many.parquet")
    out = folder / "stopped.parquet"
    command = [
        KILN, "score", f"{MODEL}@champion", "tests/configs/tiny.yaml", "--set", f"storage.root={folder / 'runs'}",
        "--input", str(folder / "many.parquet"), "--output", str(out), "--set", "score.batch_size=64",
    ]  # fmt: skip
    process = supervised(command, sigint_ignored=False)
    said = []
    for line in process.stdout:  # until the pool is being built: Ray, the actors and the reads are all running
        said.append(line)
        if "scoring with" in line:
            break
    time.sleep(2)
    members = [process.pid, *descendants(process.pid)]
    os.killpg(process.pid, signal.SIGINT)
    said.append(process.communicate(timeout=90)[0])
    assert process.returncode == 130, "".join(said)[-2000:]
    assert "scored " not in "".join(said)  # stopped before the end, or the test proves nothing
    assert sorted(p.name for p in folder.iterdir() if p.name.startswith((".stopped", "stopped"))) == []
    assert not outliving(members), "processes of kiln score outlived it"


def test_sigterm_to_kiln_alone_stops_the_run_and_everything_it_started(mixed_run):
    """Last in this module: SIGTERM to the kiln process only, as a supervisor stops a service (Ray's own handler
    used to end it with `sys.exit(15)`, an abort and two Ray agents left running)."""
    _, _, run = mixed_run
    members = [run.process.pid, *descendants(run.process.pid)]
    started = time.monotonic()
    assert run.stop(timeout_s=90, signum=signal.SIGTERM, group=False) == 143, run.output[-2000:]  # 128 + SIGTERM
    print(f"kiln run stopped {time.monotonic() - started:.1f} s after SIGTERM")
    assert "shutting down the endpoint" in run.output and "sys.exit" not in run.output
    assert not outliving(members), "processes of the run outlived it"
