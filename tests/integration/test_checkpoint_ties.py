"""A trial whose best score is reached early and tied later registers the later epoch's checkpoint, the
one Ray Train kept (issue 15: the first epoch with the best score was picked, and its checkpoint was gone)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest

from tests_support import KILN, ROOT

pytestmark = pytest.mark.slow

EPOCHS = 4


def separable_table(rows: int = 400) -> pd.DataFrame:
    """Labels a line through the data decides: any network scores 1.0 on validation from its first epoch on,
    so every epoch ties."""
    rng = np.random.default_rng(0)
    side = rng.integers(0, 2, rows)
    return pd.DataFrame({"signal": np.where(side == 1, 5.0, -5.0) + rng.normal(0, 0.3, rows),
                         "noise": rng.normal(0, 1, rows),
                         "answer": np.where(side == 1, "yes", "no")})


@pytest.fixture(scope="module")
def tied_run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("ties")
    separable_table().to_csv(folder / "table.csv", index=False)
    out = subprocess.run(
        [KILN, "run", "tests/configs/tiny.yaml", "--no-serve",
         "--set", f"storage.root={folder / 'runs'}", "--set", f"data.source={folder / 'table.csv'}",
         "--set", "data.label=answer", "--set", "data.split={val: 0.05, test: 0.1, seed: 0}",
         "--set", "registry.model_name=ties", "--set", "tune.num_samples=1", "--set", "tune.search_space={}",
         "--set", "tune.scheduler.name=fifo", "--set", "train.num_workers=1", "--set", "train.cpus_per_worker=1",
         "--set", f"train.epochs={EPOCHS}", "--set", "train.lr=1.0e-2", "--set", "train.keep_checkpoints=1"],
        cwd=ROOT, capture_output=True, text=True, timeout=600)
    return folder, out


def test_the_run_registers_the_checkpoint_ray_kept(tied_run):
    folder, out = tied_run
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    store = f"sqlite:///{folder / 'runs' / 'mlflow.db'}"
    client = mlflow.MlflowClient(tracking_uri=store, registry_uri=store)
    version = client.get_model_version_by_alias("ties", "champion")
    trial_run = client.search_runs(
        [client.get_run(version.tags["run_id"]).info.experiment_id],
        filter_string=f"tags.kiln.trial_id = '{version.tags['best_trial_id']}'")[0]
    history = [m.value for m in sorted(client.get_metric_history(trial_run.info.run_id, "val_accuracy"),
                                       key=lambda m: m.step)]
    assert len(history) == EPOCHS and history[0] == max(history) == history[-1], history  # the tie, as set up
    assert version.tags["best_epoch"] == str(EPOCHS)  # the later of the tied epochs: the one Ray kept
    assert Path(version.tags["checkpoint"], "kiln.json").exists()
    assert f"epoch {EPOCHS}: val_accuracy=1.0000" in out.stdout


def test_the_trials_table_names_the_same_best_epoch(tied_run):
    _, out = tied_run
    row = next(line for line in out.stdout.splitlines() if line.startswith("* "))
    assert row.split()[2:4] == [str(EPOCHS), str(EPOCHS)], row  # epochs run, best epoch
