"""The ledger of searches under storage.root: what `kiln run --resume` continues."""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from pipelines.config import KilnConfig

RUNNING, FINISHED, FAILED, INTERRUPTED = "running", "finished", "failed", "interrupted"


@dataclass(frozen=True)
class SearchState:
    name: str  # the Tune experiment under storage.root/ray
    config_hash: str
    parent_run_id: str
    status: str
    started: float

    def with_status(self, status: str) -> SearchState:
        return replace(self, status=status)


def config_hash(cfg: KilnConfig) -> str:
    """What must match to resume: the search itself, not where it is served or tracked."""
    relevant = cfg.model_dump(include={"name", "data", "model", "train", "tune"})
    return hashlib.sha256(json.dumps(relevant, sort_keys=True).encode()).hexdigest()[:16]


def folder(storage_root: Path) -> Path:
    return storage_root / "searches"


def save(storage_root: Path, state: SearchState) -> None:
    """Written atomically, so a killed driver leaves the previous state, never half a file."""
    folder(storage_root).mkdir(parents=True, exist_ok=True)
    path = folder(storage_root) / f"{state.name}.json"
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(asdict(state)))
    tmp.replace(path)


def latest(storage_root: Path, cfg: KilnConfig) -> SearchState | None:
    """The most recent search of this config's name, finished or not."""
    states = []
    for path in folder(storage_root).glob("*.json"):
        try:
            state = SearchState(**json.loads(path.read_text()))
        except (ValueError, TypeError):
            continue
        if state.name.startswith(f"{cfg.name}-"):
            states.append(state)
    return max(states, key=lambda s: s.started, default=None)


def new(cfg: KilnConfig, parent_run_id: str, name: str) -> SearchState:
    return SearchState(name, config_hash(cfg), parent_run_id, RUNNING, time.time())


def unfinished(state: SearchState | None) -> bool:
    return state is not None and state.status in (RUNNING, INTERRUPTED)
