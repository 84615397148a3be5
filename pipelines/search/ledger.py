"""The ledger of searches under storage.root: what `kiln run --resume` continues."""

from __future__ import annotations

import hashlib
import json
import os
import re
import socket
import time
from dataclasses import asdict, dataclass, replace

from pipelines.cluster import locks, storage
from pipelines.config import KilnConfig
from pipelines.errors import ConfigError

RUNNING, FINISHED, FAILED, INTERRUPTED = "running", "finished", "failed", "interrupted"
# A search's name: the config's name, when it started, and a count when two started in the same second.
NAME = re.compile(r"^(?P<config>.+)-\d{8}-\d{6}(-\d+)?$")


@dataclass(frozen=True)
class SearchState:
    name: str  # the Tune experiment under storage.root/ray
    config_hash: str
    parent_run_id: str
    status: str
    started: float
    host: str = ""  # the lease: which process runs the search (empty in ledgers written before leases)
    pid: int = 0
    searched: bool = False  # every trial ended: a later stage that failed can be resumed without training
    pid_started: str = ""  # when that process started (/proc): a pid the kernel reused names another process

    def with_search_done(self) -> SearchState:
        return replace(self, searched=True)

    def with_status(self, status: str) -> SearchState:
        return replace(self, status=status)

    def leased_here(self) -> SearchState:
        """This process takes the search over (a resume)."""
        return replace(self, host=socket.gethostname(), pid=os.getpid(), pid_started=process_started(os.getpid()))

    @property
    def config_name(self) -> str:
        found = NAME.match(self.name)
        return found.group("config") if found else self.name

    def holder_alive(self) -> bool:
        """Still running in a live process of this machine (another machine's process cannot be checked)."""
        if self.status != RUNNING or not self.pid or self.host != socket.gethostname() or self.pid == os.getpid():
            return False
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:  # alive, someone else's
            return True
        if self.pid_started and process_started(self.pid) not in ("", self.pid_started):
            return False  # the pid now names a process started after the search's driver died
        try:  # a zombie has exited; only its parent has not read its status yet
            return open(f"/proc/{self.pid}/stat").read().rsplit(") ", 1)[-1][0] != "Z"
        except OSError:
            return True


def process_started(pid: int) -> str:
    """The process's start time in clock ticks since boot (/proc/PID/stat, field 22); "" where unknown."""
    try:
        fields = open(f"/proc/{pid}/stat").read().rsplit(") ", 1)[-1].split()
    except OSError:
        return ""
    return fields[19] if len(fields) > 19 else ""


def hold(cfg: KilnConfig, name: str):
    """An exclusive hold on search `name` for this process's lifetime (release() ends it sooner), on a storage.root
    that is a local folder: two drivers racing to resume one search (both saw its holder dead) meet here, and the
    second is refused. On an object store the pid lease in the ledger is the only guard."""
    return locks.take(
        cfg,
        f"searches/{name}.lock",
        0.0,
        error=ConfigError,
        busy=f"search {name} is held by another live kiln process on this store (a run or --resume "
        "of it); wait for that one to end",
    )


# Config keys added after searches were saved, with their defaults: left at the default, a key is not hashed.
# Keys added since searches were first saved, each with the value that trains as Kiln did before it existed: a
# search saved then hashes the same only when the config still trains that way (the recipe's new defaults don't).
ADDED_LATER = (
    ("model", "columns", {}),
    ("data", "tokenizer", "words"),
    ("data", "char_ngrams", 0),
    ("data", "numbers", "standard"),
    ("data", "categories", "onehot"),
    ("tune", "search", "random"),
    ("model", "trust_code", False),
    ("model", "text_wide", False),
    ("model", "image_pool", 1),
    ("model", "image_standardize", "dataset"),
    ("train", "schedule", "constant"),
    ("train", "warmup_fraction", 0.0),
    ("train", "grad_clip", 0.0),
    ("train", "label_smoothing", 0.0),
    ("tune", "scheduler.perturbation_interval", 2),
    ("model", "pretrained", ""),
    ("model", "pooling", "auto"),
    ("model", "pretrained_batch_size", 64),
    ("train", "finetune", "frozen"),
    ("train", "backbone_lr", 5e-5),
)
COLUMN_KEYS_ADDED_LATER = ("pretrained", "pooling")  # a model.columns entry's keys, left out while unset (None)


def config_hash(cfg: KilnConfig) -> str:
    """What must match to resume: the search itself, not where it is served or tracked."""
    relevant = cfg.model_dump(include={"name", "data", "model", "train", "tune"})
    for section, key, default in ADDED_LATER:
        *parents, leaf = key.split(".")
        node = relevant[section]
        for parent in parents:
            node = node[parent]
        if node[leaf] == default:
            del node[leaf]
    for column in relevant["model"].get("columns", {}).values():
        for key in COLUMN_KEYS_ADDED_LATER:
            if column.get(key, 0) is None:
                del column[key]
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
        if state.config_name == cfg.name:  # exactly: a config named digits is not digits-cnn
            states.append(state)
    return max(states, key=lambda s: s.started, default=None)


def fresh_name(cfg: KilnConfig) -> str:
    """`<name>-<YYYYmmdd-HHMMSS>`, with -2, -3, ... when a search of that name already exists."""
    fs, folder = _folder(cfg)
    stamp = f"{cfg.name}-{time.strftime('%Y%m%d-%H%M%S')}"
    import pyarrow.fs

    taken = {
        info.base_name.removesuffix(".json")
        for info in fs.get_file_info(pyarrow.fs.FileSelector(folder, allow_not_found=True))
    }
    local = isinstance(fs, pyarrow.fs.LocalFileSystem)
    count, name = 1, stamp
    while name in taken or (local and not _claimed(f"{folder}/{name}.json")):
        count += 1
        name = f"{stamp}-{count}"
    return name


def _claimed(path: str) -> bool:
    """Create the ledger file, empty, unless it exists: of two runs starting in the same second, one gets the name
    (an exclusive create is atomic on a local filesystem; `latest` skips an entry not yet written)."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    try:
        os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644))
    except FileExistsError:
        return False
    return True


def new(cfg: KilnConfig, parent_run_id: str, name: str) -> SearchState:
    return SearchState(
        name,
        config_hash(cfg),
        parent_run_id,
        RUNNING,
        time.time(),
        socket.gethostname(),
        os.getpid(),
        pid_started=process_started(os.getpid()),
    )


def unfinished(state: SearchState | None) -> bool:
    """What --resume continues: a search interrupted or killed, or one that ended whose evaluation or
    registration then failed (it resumes from the finished trials)."""
    return state is not None and (state.status in (RUNNING, INTERRUPTED) or (state.status == FAILED and state.searched))
