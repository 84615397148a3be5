"""Faults injected for real: the process that trains SIGKILLed mid-run, a Ray Train worker of a DDP trial or the Tune
trial actor a 1-worker trial trains in."""

from __future__ import annotations

import os
import signal
import subprocess
import time

import pytest

from tests_support import KILN, ROOT, descendants_named, store_client

pytestmark = pytest.mark.slow


def train_worker_pids(driver: int, process_name: str) -> list[int]:
    return descendants_named(driver, process_name)  # the run's own runtime: under its driver


# A 1-worker trial's epoch on digits takes milliseconds: it gets enough of them to be killed mid-run.
@pytest.mark.parametrize(
    ("workers", "process_name", "epochs"),
    [(2, "RayTrainWorker", 6), (1, "ray::ImplicitFunc", 60)],
    ids=["ddp-worker", "trial-actor"],
)
def test_killed_worker_is_replaced_and_training_resumes_from_its_checkpoint(tmp_path, workers, process_name, epochs):
    root = tmp_path / "runs"
    process = subprocess.Popen(
        [
            KILN,
            "run",
            "tests/configs/tiny.yaml",
            "--no-serve",
            "--set",
            f"storage.root={root}",
            "--set",
            "tune.num_samples=1",
            "--set",
            "tune.search_space={}",
            "--set",
            "tune.scheduler.name=fifo",
            "--set",
            f"train.epochs={epochs}",
            "--set",
            "registry.model_name=fault-test",
            "--set",
            f"train.num_workers={workers}",
            "--set",
            f"train.cpus_per_worker={1 / workers:g}",
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines, killed, before, after = [], None, [], []
    for line in process.stdout:
        lines.append(line.rstrip())
        if killed is None and " epoch 2: " in line:
            before = train_worker_pids(process.pid, process_name)
            assert before, f"no {process_name} process found"
            killed = before[-1]
            os.kill(killed, signal.SIGKILL)
            kill_time = time.monotonic()
        elif killed is not None and not after and " epoch " in line:
            after = train_worker_pids(process.pid, process_name)  # the first report after the kill: the new group
    process.wait(300)
    output = "\n".join(lines)
    assert process.returncode == 0, output[-3000:]
    assert killed is not None and time.monotonic() - kill_time < 300
    assert set(after) - set(before), f"no new worker started after the kill ({before} -> {after})"

    client = store_client(f"sqlite:///{root / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("kiln-test")
    trial = next(r for r in client.search_runs([experiment.experiment_id]) if r.data.tags.get("kiln.kind") == "trial")
    steps = [m.step for m in client.get_metric_history(trial.info.run_id, "val_accuracy")]
    assert steps == list(range(1, epochs + 1)), f"each epoch once in the trial's history, even one recomputed: {steps}"
    version = client.get_model_version_by_alias("fault-test", "champion")
    assert float(version.tags["test_accuracy"]) >= 0.9
