"""tune.search: tpe through `kiln run`: Optuna's sampler behind Ray Tune, its state saved with the search, signed,
and restored by `--resume` after the driver was killed for real (SIGKILL, its Ray runtime with it)."""

from __future__ import annotations

import json
import subprocess

import pytest

from tests_support import KILN, ROOT, kill_with_children, store_client

pytestmark = pytest.mark.slow

EPOCHS = 2
TRIALS = 5
SEARCH = [
    "--no-serve",
    "--set",
    "tune.search=tpe",
    "--set",
    f"tune.num_samples={TRIALS}",
    "--set",
    "tune.scheduler.name=fifo",
    "--set",
    # a nested choice too: Optuna's categorical takes plain values, so Kiln hands it JSON text and decodes it
    'tune.search_space={"train.lr": {"loguniform": [0.001, 0.02]}, "model.hidden": {"choice": [[32], [64, 32]]}}',
    "--set",
    f"train.epochs={EPOCHS}",
    "--set",
    "registry.model_name=tpe-test",
]


@pytest.fixture(scope="module")
def killed_then_resumed(tmp_path_factory):
    root = tmp_path_factory.mktemp("tpe") / "runs"
    command = [KILN, "run", "tests/configs/tiny.yaml", "--set", f"storage.root={root}", *SEARCH]
    driver = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    before = []
    for line in driver.stdout:
        before.append(line.rstrip())
        if sum(f"finished {EPOCHS} epochs" in seen for seen in before) >= 2:  # two trials told to the sampler
            kill_with_children(driver.pid)
            break
    driver.wait(60)
    resumed = subprocess.run([*command, "--resume"], cwd=ROOT, capture_output=True, text=True, timeout=600)
    return root, "\n".join(before), resumed


def test_the_resumed_tpe_search_finishes_every_trial_with_the_values_written(killed_then_resumed):
    root, before, resumed = killed_then_resumed
    assert "finished 2 epochs" in before
    assert "(1/5, proposed by random)" in before  # TPE's start-up trials are drawn at random, and say so
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    assert "resuming search kiln-test-" in resumed.stdout
    client = store_client(f"sqlite:///{root / 'mlflow.db'}")
    runs = client.search_runs([client.get_experiment_by_name("kiln-test").experiment_id])
    trials = [r for r in runs if r.data.tags.get("kiln.kind") == "trial" and "kiln.lost" not in r.data.tags]
    assert len(trials) == TRIALS and all(r.info.status == "FINISHED" for r in trials)
    # a trial made just before the kill but missing from Tune's saved state is ended, not left RUNNING
    lost = [r for r in runs if "kiln.lost" in r.data.tags]
    assert all(r.info.status == "KILLED" for r in lost)
    assert {r.data.params["model.hidden"] for r in trials} <= {"[32]", "[64, 32]"}  # decoded, then logged
    assert client.get_model_version_by_alias("tpe-test", "champion")


def test_the_samplers_state_is_saved_with_the_search_and_signed(killed_then_resumed):
    root, _, _ = killed_then_resumed
    (search,) = (root / "ray").glob("kiln-test-*")
    states = sorted(p.name for p in search.glob("searcher-state-*.pkl"))
    assert states, "Tune saved no searcher state"
    signed = json.loads(json.loads((search / "kiln-search.sig").read_text())["signed"])["files"]
    assert all(name in signed for name in states), (states, sorted(signed))
