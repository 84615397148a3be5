"""Bounded disk: a run folder holds one trial's checkpoints (the winner's, at most train.keep_checkpoints) and
grows by well under 1 MiB per extra trial, so a search three times wider stays within the same stated bound."""

from __future__ import annotations

import subprocess

from tests_support import KILN, ROOT

FIXED_BYTES, PER_TRIAL_BYTES = 10 * 2**20, 2**20  # the stated bound: 10 MiB + 1 MiB a trial


def search_folder(root, num_samples: int) -> int:
    from pipelines.cluster.storage import folder_bytes

    out = subprocess.run(
        [
            KILN,
            "run",
            "tests/configs/tiny.yaml",
            "--no-serve",
            "--set",
            f"storage.root={root}",
            "--set",
            f"tune.num_samples={num_samples}",
            "--set",
            "train.epochs=1",
            "--set",
            "tune.scheduler.name=fifo",
            "--set",
            "train.num_workers=1",
            "--set",
            "tune.search_space={train.lr: {loguniform: [1.0e-4, 1.0e-2]}}",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    weights = list((root / "ray").rglob("model.pt"))  # <trial's folder>/checkpoint_*/model.pt
    with_checkpoints = {w.parent.parent for w in weights}
    assert len(with_checkpoints) == 1, f"only the registered winner keeps checkpoints: {sorted(with_checkpoints)}"
    assert len(weights) <= 2  # train.keep_checkpoints
    return folder_bytes(root)


def test_the_run_folder_stays_bounded_as_trials_grow(tmp_path):
    small, large = search_folder(tmp_path / "two", 2), search_folder(tmp_path / "six", 6)
    print(
        f"run folder: {small / 2**20:.2f} MiB with 2 trials, {large / 2**20:.2f} MiB with 6 "
        f"({(large - small) / 4 / 2**10:.0f} KiB per extra trial)"
    )
    assert small <= FIXED_BYTES + 2 * PER_TRIAL_BYTES
    assert large <= FIXED_BYTES + 6 * PER_TRIAL_BYTES
    assert (large - small) / 4 < PER_TRIAL_BYTES
