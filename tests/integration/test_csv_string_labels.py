"""A user's own CSV with string labels: `kiln run --no-serve`, then `kiln serve` answers in strings."""

from __future__ import annotations

import subprocess

import numpy as np
import pytest
import requests

from tests_support import KILN, ROOT, free_port

pytestmark = pytest.mark.slow

NAMES = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]


@pytest.fixture(scope="module")
def csv_store(tmp_path_factory):
    from sklearn.datasets import load_digits

    folder = tmp_path_factory.mktemp("csv-run")
    digits = load_digits(as_frame=True).frame
    digits["digit"] = [NAMES[i] for i in digits.pop("target")]
    digits.to_csv(folder / "digits.csv", index=False)
    out = subprocess.run(
        [KILN, "run", "tests/configs/tiny.yaml", "--no-serve",
         "--set", f"storage.root={folder / 'runs'}", "--set", f"data.source={folder / 'digits.csv'}",
         "--set", "data.label=digit", "--set", "registry.model_name=digits-named",
         "--set", "tune.num_samples=1", "--set", "tune.search_space={}", "--set", "tune.scheduler.name=fifo",
         "--set", "train.num_workers=2", "--set", "train.epochs=3",
         "--set", "train.cache_shard_mb=0"],  # data over the in-memory cache: Ray Data shards every epoch, DDP
        cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert "Endpoint:" not in out.stdout  # --no-serve stops after registering
    assert "stream through Ray Data each epoch" in out.stdout
    return folder, digits


def test_kiln_serve_answers_with_the_labels_own_strings(csv_store):
    folder, digits = csv_store
    port = free_port()
    process = subprocess.Popen(
        [KILN, "serve", "tests/configs/tiny.yaml", "--model", "digits-named@champion",
         "--set", f"storage.root={folder / 'runs'}", "--set", f"serve.port={port}"],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    printed = []
    try:
        for line in process.stdout:
            printed.append(line)
            if line.startswith("Endpoint:") or line.startswith("kiln: error"):
                break
        assert printed and printed[-1].startswith("Endpoint:"), "kiln serve printed:\n" + "".join(printed)[-3000:]
        rows = digits.drop(columns="digit").sample(50, random_state=0)
        answer = requests.post(f"http://127.0.0.1:{port}/predict",
                               json={"instances": rows.to_numpy().tolist()}, timeout=60)
        assert answer.status_code == 200, answer.text
        predictions = answer.json()["predictions"]
        assert set(predictions) <= set(NAMES)
        truth = digits.loc[rows.index, "digit"].to_numpy()
        assert np.mean(np.array(predictions) == truth) > 0.8
    finally:
        process.send_signal(2)
        process.wait(120)
    assert process.returncode == 0


def test_serving_a_model_that_is_not_registered_fails_clearly(csv_store):
    folder, _ = csv_store
    out = subprocess.run([KILN, "serve", "--model", "no-such-model@champion",
                          "--set", f"storage.root={folder / 'runs'}"],
                         cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 1
    assert "registry.alias 'champion' not found for model 'no-such-model'" in out.stderr


def test_validate_reads_the_csv_without_starting_anything(csv_store):
    folder, _ = csv_store
    out = subprocess.run([KILN, "validate", "tests/configs/tiny.yaml",
                          "--set", f"data.source={folder / 'digits.csv'}", "--set", "data.label=digit"],
                         cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and "1797 rows, 64 features, 10 classes" in out.stdout
    bad = subprocess.run([KILN, "validate", "tests/configs/tiny.yaml",
                          "--set", f"data.source={folder / 'digits.csv'}", "--set", "data.label=target"],
                         cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and "data.label: column 'target' not in data" in bad.stderr
