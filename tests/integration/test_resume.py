"""The driver killed for real (SIGKILL, its Ray runtime with it), then `kiln run --resume`."""

from __future__ import annotations

import subprocess

import pytest

from tests_support import KILN, ROOT, kill_mid_search, store_client

pytestmark = pytest.mark.slow

EPOCHS = 3
SEARCH = [
    "--no-serve",
    "--set",
    "tune.num_samples=3",
    "--set",
    "tune.scheduler.name=fifo",
    "--set",
    'tune.search_space={"train.lr": {"choice": [0.003, 0.01, 0.005]}}',
    "--set",
    f"train.epochs={EPOCHS}",
    "--set",
    "registry.model_name=resume-test",
    # DDP trials (Ray Train runs), slow enough to kill mid-trial; test_faults covers the Tune-actor restore
    "--set",
    "train.num_workers=2",
    "--set",
    "train.cpus_per_worker=0.5",
]


def kiln(root, *args, timeout=600):
    return subprocess.run(
        [KILN, "run", "tests/configs/tiny.yaml", "--set", f"storage.root={root}", *SEARCH, *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.fixture(scope="module")
def killed_then_resumed(tmp_path_factory):
    root = tmp_path_factory.mktemp("resume") / "runs"
    meanwhile = {}
    before = kill_mid_search(
        [KILN, "run", "tests/configs/tiny.yaml", "--set", f"storage.root={root}", *SEARCH],
        epochs=EPOCHS,
        while_running=lambda: meanwhile.update(second=kiln(root, "--resume")),
    )
    assert meanwhile["second"].returncode == 2, meanwhile["second"].stdout[-2000:] + meanwhile["second"].stderr
    assert "--resume: search kiln-test-" in meanwhile["second"].stderr
    assert "is still running (pid " in meanwhile["second"].stderr

    plain = kiln(root, "--set", "train.num_workers=64")  # fails fast, after saying what it would do
    changed = kiln(root, "--resume", "--set", "train.batch_size=16")
    # Someone who can write storage.root (not the key) appends to a pickle Tune would load on restore.
    (state,) = (root / "ray").glob("kiln-test-*/tuner.pkl")
    saved = state.read_bytes()
    state.write_bytes(saved + b"x")
    altered = kiln(root, "--resume")
    state.write_bytes(saved)
    resumed = kiln(root, "--resume")
    return root, before, plain, changed, resumed, altered


def test_resume_finishes_the_same_search(killed_then_resumed):
    root, _, _, _, resumed, _ = killed_then_resumed
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    assert "resuming search kiln-test-" in resumed.stdout
    client = store_client(f"sqlite:///{root / 'mlflow.db'}")
    runs = client.search_runs([client.get_experiment_by_name("kiln-test").experiment_id])
    parents = [r for r in runs if r.data.tags.get("kiln.kind") == "search"]
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"  # continued, not duplicated
    trials = {r.data.tags["kiln.trial_id"]: r for r in runs if r.data.tags.get("kiln.kind") == "trial"}
    assert len(trials) == 3

    history = {
        tid: [m.step for m in client.get_metric_history(r.info.run_id, "val_accuracy")] for tid, r in trials.items()
    }
    first = next(tid for tid in history if tid.endswith("_00000"))
    assert history[first] == list(range(1, EPOCHS + 1)), "a finished trial was rerun"
    interrupted = next(tid for tid in history if tid.endswith("_00001"))
    steps = history[interrupted]
    assert steps[0] == 1 and sorted(set(steps)) == list(range(1, EPOCHS + 1))
    assert len(steps) - len(set(steps)) <= 1, f"the interrupted trial started over: {steps}"
    assert client.get_model_version_by_alias("resume-test", "champion")


def test_plain_run_after_an_interrupted_one_says_it_starts_a_new_search(killed_then_resumed):
    _, _, plain, _, _, _ = killed_then_resumed
    assert "did not finish; this starts a new search (add --resume to continue that one instead)" in plain.stdout
    assert plain.returncode == 2


def test_resume_refuses_a_changed_config(killed_then_resumed):
    _, _, _, changed, _, _ = killed_then_resumed
    assert changed.returncode == 2
    assert "--resume: the config changed since search kiln-test-" in changed.stderr


def test_resume_refuses_a_search_whose_saved_state_was_altered_naming_the_file(killed_then_resumed):
    *_, altered = killed_then_resumed
    assert altered.returncode == 2, altered.stdout[-2000:] + altered.stderr[-2000:]
    assert "tuner.pkl: not a file search kiln-test-" in altered.stderr
    assert "refusing to resume" in altered.stderr
