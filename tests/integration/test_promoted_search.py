"""Promotion-based ASHA for real (tune.scheduler.name: asha_promote): trials pause at a rung with a checkpoint and
are later promoted and resumed from it, each epoch reaching MLflow once. The trials train in their Tune actors
(1 worker) from Ray Data shards (train.cache_shard_mb=0), so that path runs here too."""

from __future__ import annotations

import json
import re
import subprocess

import pytest

from tests_support import KILN, ROOT, store_client

pytestmark = pytest.mark.slow

EPOCHS = 4  # rungs at epochs 1 and 2


@pytest.fixture(scope="module")
def promoted_search(tmp_path_factory):
    root = tmp_path_factory.mktemp("promotion") / "runs"
    out = subprocess.run(
        [
            KILN,
            "run",
            "tests/configs/tiny.yaml",
            "--no-serve",
            "--set",
            f"storage.root={root}",
            "--set",
            "tune.scheduler.name=asha_promote",
            "--set",
            "train.num_workers=1",
            "--set",
            "train.cpus_per_worker=1",
            "--set",
            f"train.epochs={EPOCHS}",
            "--set",
            "train.cache_shard_mb=0",
            "--set",
            "registry.model_name=promotion-test",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    return root, out.stdout


def test_a_paused_trial_is_promoted_and_resumes_from_its_checkpoint(promoted_search):
    root, output = promoted_search
    resumed = re.findall(r"trial (\w+) promoted: resumes after epoch (\d+)", output)
    assert resumed, output[-3000:]
    # A resumed trial's next report is the epoch after the one it paused at, not epoch 1 again.
    for trial_id, epoch in resumed:
        promoted_at = output.index(f"trial {trial_id} promoted: resumes after epoch {epoch}")
        assert f"trial {trial_id} paused after epoch {epoch}: " in output[:promoted_at]  # said when it paused
        after = output[promoted_at:]
        assert re.search(rf"trial {trial_id} epoch {int(epoch) + 1}: ", after), after[:2000]
    saved = json.loads(next((root / "ray").glob("*/kiln-rungs.json")).read_text())["brackets"]
    assert len(saved) == 1 and saved[0]["milestones"] == [1, 2]
    assert len(saved[0]["recorded"][0]) == 4 and len(saved[0]["promoted"][0]) >= 2  # the top half of 4 went on


def test_each_epoch_of_every_trial_is_in_mlflow_once_and_the_weak_trials_stopped(promoted_search):
    root, _ = promoted_search
    client = store_client(f"sqlite:///{root / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("kiln-test")
    trials = [r for r in client.search_runs([experiment.experiment_id]) if r.data.tags.get("kiln.kind") == "trial"]
    assert len(trials) == 4
    epochs = sorted(len(client.get_metric_history(t.info.run_id, "val_accuracy")) for t in trials)
    for trial in trials:
        steps = [m.step for m in client.get_metric_history(trial.info.run_id, "val_accuracy")]
        assert steps == list(range(1, len(steps) + 1)), f"{trial.data.tags['kiln.trial_id']}: {steps}"
    assert epochs[-1] == EPOCHS and epochs[0] < EPOCHS, epochs  # the best trained on, the weakest did not
    assert sum(epochs) < 4 * EPOCHS
    assert client.get_model_version_by_alias("promotion-test", "champion")
