"""An image set in class folders through `kiln run` to the endpoint: scikit-learn's digits as 32 px grey PNGs
(0.47 over HTTP before the CNN pooled to a grid; colour and other sizes: tests/unit/training), base64 images in
JSON rows and v2 BYTES, a corrupt image refused naming its row, and the pyfunc taking bytes; one shared run, which
must reach 0.95 test accuracy. The run streams (train.cache_shard_mb=0): Ray Data decodes the images every epoch,
as it does for a set larger than memory."""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import requests

from pipelines.data import builtin

from tests_support import KILN, start_run

pytestmark = pytest.mark.slow

MODEL = "digits-cnn-test"


@pytest.fixture(scope="module")
def image_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("images") / "runs"
    folder = builtin.write_digits(root.parent / "digits-32", side=32)
    run = start_run(
        "configs/examples/digits_images.yaml",
        root,
        "--set",
        f"data.source={folder}",
        "--set",
        f"registry.model_name={MODEL}",
        "--set",
        "tune.num_samples=1",
        "--set",
        "tune.search_space={}",
        "--set",
        "tune.scheduler.name=fifo",
        "--set",
        "train.epochs=10",
        "--set",
        "model.image_channels=[16, 32]",
        "--set",
        "train.lr=3e-3",
        "--set",
        "train.cache_shard_mb=0",
    )
    if run.process.poll() is not None and "Serving until Ctrl-C." not in run.output:
        pytest.fail(f"kiln run exited with {run.process.returncode}:\n{run.output[-3000:]}")
    yield root, run
    run.stop()


def pngs(root: Path, per_class: int) -> tuple[list[bytes], list[str]]:
    """The last files of each class folder (mostly the test split's; they are a sample, not a score)."""
    found, labels = [], []
    for folder in sorted((root.parent / "digits-32").iterdir()):
        for path in sorted(folder.iterdir())[-per_class:]:
            found.append(path.read_bytes())
            labels.append(folder.name)
    return found, labels


def test_the_run_reads_the_folders_as_images_and_says_there_is_no_baseline(image_run):
    _, run = image_run
    assert "1797 rows, 1 features (1024 encoded), 10 classes" in run.output  # 32x32 grey
    assert "stream through Ray Data each epoch, images decoded in its tasks" in run.output
    assert "baseline: none: image columns have no cheap baseline" in run.output
    assert "registered candidate: network, the only one (images have no baseline)" in run.output
    assert "Sample answer (200)" in run.output  # the printed curl line sends the test rows' images as b64
    accuracy = float(run.output.split("test_accuracy=")[-1].split()[0].rstrip(","))
    assert accuracy >= 0.95, run.output[-2000:]


def test_the_endpoint_takes_base64_images_and_refuses_a_corrupt_one_by_row(image_run):
    root, run = image_run
    images, labels = pngs(root, 3)
    rows = [{"image": {"b64": base64.b64encode(b).decode()}} for b in images]
    answer = requests.post(f"{run.url}/predict", json={"instances": rows}, timeout=60)
    assert answer.status_code == 200, answer.text
    assert np.mean(np.array(answer.json()["predictions"]) == np.array(labels)) >= 0.9
    assert requests.get(f"{run.url}/model", timeout=10).json()["types"] == {"image": "image"}
    corrupt = [rows[0], {"image": {"b64": base64.b64encode(b"GIF89a not really").decode()}}]
    refused = requests.post(f"{run.url}/predict", json={"instances": corrupt}, timeout=60)
    assert refused.status_code == 422 and refused.json()["detail"].startswith("instances[1][0] (image): not a PNG")
    body = {
        "inputs": [
            {
                "name": "image",
                "datatype": "BYTES",
                "shape": [2],
                "data": [rows[0]["image"]["b64"], rows[-1]["image"]["b64"]],
            }
        ]
    }
    v2 = requests.post(f"{run.url}/v2/models/{MODEL}/infer", json=body, timeout=60)
    assert v2.status_code == 200 and len(v2.json()["outputs"][0]["data"]) == 2, v2.text
    assert requests.get(f"{run.url}/healthz", timeout=10).status_code == 200  # the replica lived through it all


def test_pyfunc_in_a_fresh_process_takes_image_bytes(image_run):
    root, run = image_run
    images, labels = pngs(root, 2)
    script = (
        "import json, sys, mlflow, pandas as pd\n"
        f"mlflow.set_tracking_uri({run.tracking_uri!r})\n"
        f"mlflow.set_registry_uri({run.tracking_uri!r})\n"
        f"model = mlflow.pyfunc.load_model('models:/{MODEL}@champion')\n"
        "frame = pd.DataFrame({'image': [bytes.fromhex(h) for h in json.loads(sys.stdin.read())]})\n"
        "print(json.dumps(list(model.predict(frame))))\n"
    )
    loaded = subprocess.run(
        [sys.executable, "-c", script],
        input=json.dumps([b.hex() for b in images]),
        capture_output=True,
        text=True,
        timeout=300,
        cwd="/",
    )
    assert loaded.returncode == 0, loaded.stderr[-2000:]
    predictions = json.loads(loaded.stdout.strip().splitlines()[-1])
    assert len(predictions) == len(labels) and np.mean(np.array(predictions) == np.array(labels)) >= 0.9


def test_kiln_score_reads_a_folder_of_images_and_sets_a_corrupt_one_aside(image_run):
    """`kiln score` over a folder of images (nested, as a camera's day folders are): each file's answer beside its
    name, in name order, and a file that does not decode in the errors file with its reason, exit 3."""
    import pandas as pd

    root, _ = image_run
    folder = root.parent / "to-score"
    for source in sorted((root.parent / "digits-32").iterdir()):
        (folder / f"day-{source.name}").mkdir(parents=True)
        for path in sorted(source.iterdir())[-2:]:
            shutil.copy(path, folder / f"day-{source.name}" / path.name)
    (folder / "zz-broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"cut short")
    out = root.parent / "scored.csv"
    done = subprocess.run(
        [KILN, "score", f"{MODEL}@champion", "configs/examples/digits_images.yaml", "--set", f"storage.root={root}",
         "--input", str(folder), "--output", str(out)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 3, done.stdout[-2000:] + done.stderr[-2000:]
    assert "scored 20 of 21 rows" in done.stdout
    scored = pd.read_csv(out)
    assert scored["row"].tolist() == list(range(20)) and scored["path"].str.startswith("day-").all()
    truth = scored["path"].str.split("/").str[0].str.removeprefix("day-").astype(int)
    assert (scored["prediction"] == truth).mean() >= 0.9
    (failed,) = pd.read_parquet(root.parent / "scored.csv.errors.parquet").to_dict("records")
    assert failed["row"] == 20 and failed["error"].startswith("column 'image': cannot decode the image")
    # a folder output: Ray Data's writer, the listing's rows numbered, the same answers
    parts = subprocess.run(
        [KILN, "score", f"{MODEL}@champion", "configs/examples/digits_images.yaml", "--set", f"storage.root={root}",
         "--input", str(folder), "--output", f"{root.parent / 'parts'}/"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert parts.returncode == 3, parts.stdout[-2000:] + parts.stderr[-2000:]
    written = pd.read_parquet(root.parent / "parts").sort_values("row", ignore_index=True)
    expected = scored[["row", "path", "prediction"]].astype({"prediction": str})  # a class folder's name: text
    assert written[["row", "path", "prediction"]].values.tolist() == expected.values.tolist()
    assert pd.read_parquet(root.parent / "parts.errors.parquet")["row"].tolist() == [20]


def test_a_file_that_does_not_decode_stops_a_streamed_run_before_training_naming_the_file(tmp_path):
    folder = builtin.write_digits(tmp_path / "digits")
    shutil.rmtree(folder / "3")  # a smaller set: a quicker check
    (folder / "9" / "9999.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"cut short")
    refused = subprocess.run(
        [
            KILN,
            "run",
            "configs/examples/digits_images.yaml",
            "--no-serve",
            "--set",
            f"data.source={folder}",
            "--set",
            f"storage.root={tmp_path / 'runs'}",
            "--set",
            "train.cache_shard_mb=0",
            "--set",
            "registry.model_name=never-registered",
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    said = refused.stdout + refused.stderr
    assert refused.returncode == 2, said[-3000:]
    assert "9999.png" in said and "column 'image' row" in said, said[-3000:]
    assert "✗ ingest" in refused.stdout and "» search" not in refused.stdout and "» register" not in said
    assert "never-registered v1" not in said  # nothing registered (the name itself is said at the start)


def test_health_checks_answer_while_big_images_are_validated(image_run):
    """Images are decoded off the event loop: requests of the largest images a request may hold (4 of 16 M
    pixels, serve.max_request_pixels) leave the replica's health route answering at once."""
    import io
    import threading
    import time

    from PIL import Image

    _, run = image_run
    buffer = io.BytesIO()
    Image.new("L", (4000, 4000), color=7).save(buffer, format="PNG")  # 16 M pixels in a few KiB
    rows = [{"image": {"b64": base64.b64encode(buffer.getvalue()).decode()}}] * 4
    answers = []

    def heavy():
        answers.append(requests.post(f"{run.url}/predict", json={"instances": rows}, timeout=120).status_code)

    senders = [threading.Thread(target=heavy) for _ in range(3)]
    for sender in senders:
        sender.start()
    health = []
    while any(s.is_alive() for s in senders):
        started = time.perf_counter()
        assert requests.get(f"{run.url}/healthz", timeout=10).status_code == 200
        health.append(time.perf_counter() - started)
    for sender in senders:
        sender.join()
    assert answers == [200] * 3 and len(health) >= 3, (answers, health)
    assert max(health) < 1.0, health
