"""The ledger of searches under storage.root: what `kiln run --resume` continues."""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import asdict, dataclass, replace

from pipelines import storage
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


def _folder(cfg: KilnConfig) -> tuple[object, str]:
    """Beside Tune's experiment state, under storage.root (a folder or a URI), so a search can be resumed
    from wherever that state can be read."""
    fs, root = storage.filesystem(cfg)
    return fs, f"{root}/searches"


def save(cfg: KilnConfig, state: SearchState) -> None:
    """Written whole: a killed driver leaves the previous state, never half a file (an atomic rename on a
    filesystem; an object store replaces an object in one PUT)."""
    import pyarrow.fs

    fs, folder = _folder(cfg)
    fs.create_dir(folder, recursive=True)
    path = f"{folder}/{state.name}.json"
    local = isinstance(fs, pyarrow.fs.LocalFileSystem)
    with fs.open_output_stream(f"{path}.tmp" if local else path) as out:
        out.write(json.dumps(asdict(state)).encode())
    if local:
        fs.move(f"{path}.tmp", path)


def latest(cfg: KilnConfig) -> SearchState | None:
    """The most recent search of this config's name, finished or not."""
    import pyarrow.fs

    fs, folder = _folder(cfg)
    states = []
    for info in fs.get_file_info(pyarrow.fs.FileSelector(folder, allow_not_found=True)):
        if not info.path.endswith(".json"):
            continue
        try:
            with fs.open_input_stream(info.path) as source:
                state = SearchState(**json.loads(source.read()))
        except (ValueError, TypeError):
            continue
        if state.name.startswith(f"{cfg.name}-"):
            states.append(state)
    return max(states, key=lambda s: s.started, default=None)


def new(cfg: KilnConfig, parent_run_id: str, name: str) -> SearchState:
    return SearchState(name, config_hash(cfg), parent_run_id, RUNNING, time.time())


def unfinished(state: SearchState | None) -> bool:
    return state is not None and state.status in (RUNNING, INTERRUPTED)
