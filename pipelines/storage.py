"""What a run leaves on disk: trial checkpoints are pruned once the winner is registered."""

from __future__ import annotations

import shutil
from pathlib import Path


def folder_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def train_run_dir(storage_root: Path, trial_id: str) -> Path:
    """Where a trial's Train run keeps its checkpoints (named in tune.run_trial)."""
    return storage_root / "ray" / f"train-{trial_id}"


def prune_checkpoints(storage_root: Path, trial_ids: list[str], *, keep: str) -> int:
    """Delete every trial's checkpoints but `keep`'s (the registered model holds its own copy).
    Returns the bytes freed."""
    freed = 0
    for trial_id in trial_ids:
        folder = train_run_dir(storage_root, trial_id)
        if trial_id == keep or not folder.is_dir():
            continue
        freed += folder_bytes(folder)
        shutil.rmtree(folder, ignore_errors=True)
    return freed
