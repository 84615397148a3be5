"""A search's saved state, signed with Kiln's key, so that `kiln run --resume` never hands Tune a file that
someone who can write storage.root (a shared mount, a bucket) put there: Tune unpickles its state on restore.

What is signed: every file Tune unpickles (`*.pkl` anywhere in the search folder; its top-level JSON state,
which carries pickles inside). Each version of such a file that this search wrote has its sha256 listed in
`kiln-search.sig`, and the list is signed (integrity.sign). A version is signed where Tune's driver writes it
first, its local staging folder, at the end of each controller step (before it can reach storage, or right
after): a driver killed by SIGKILL leaves a folder that still resumes. Kiln's own files beside Tune's
(`kiln-*`) are JSON read as data, and checkpoints are loaded weights-only: neither is listed.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from pipelines.tracking import integrity

SIGNATURE_FILE = "kiln-search.sig"
TUNER_STATE = "tuner.pkl"  # Tune writes it straight to storage when a Tuner is made, not through staging
MAX_VERSIONS = 10_000  # per file: a week-long search saves its state every few seconds


def guarded(relative: str) -> bool:
    """Whether Tune may unpickle the file at this path (relative to the search folder) on restore."""
    parts = relative.split("/")
    name = parts[-1]
    if name.startswith(("kiln-", "tmp-", ".")):  # Kiln's JSON; Tune's half-written temporaries it never reads
        return False
    return name.endswith((".pkl", ".pickle")) or (len(parts) == 1 and name.endswith(".json"))


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class SearchSignature:
    """The versions of guarded files one search wrote, and where their signed list lives in storage."""

    def __init__(self, fs, folder: str, search_name: str, *, key: bytes | None = None):
        self.fs, self.folder, self.search_name = fs, folder.rstrip("/"), search_name
        self.key = integrity.signing_key() if key is None else key
        self.versions: dict[str, list[str]] = {}
        self._seen: dict[str, tuple[int, int]] = {}  # a local file's (size, mtime_ns) when last hashed

    @classmethod
    def of(cls, cfg, search_name: str) -> SearchSignature:
        """The signature of search SEARCH_NAME in cfg's storage.root."""
        from pipelines.cluster import storage

        where = storage.ray_storage(cfg)
        return cls(where["storage_filesystem"], f"{where['storage_path']}/{search_name}", search_name)

    @property
    def path(self) -> str:
        return f"{self.folder}/{SIGNATURE_FILE}"

    # --- signing ----------------------------------------------------------------------------------------------

    def add(self, relative: str, data: bytes) -> bool:
        """List this version of the file; True when it was not listed yet."""
        known = self.versions.setdefault(relative, [])
        digest = sha256(data)
        if digest in known:
            return False
        known.append(digest)
        del known[:-MAX_VERSIONS]
        return True

    def add_local(self, staging: str | Path) -> bool:
        """List the guarded files of a local folder laid out as the search folder (Tune's driver staging),
        hashing only those changed since last time. True when anything new was listed."""
        changed = False
        root = Path(staging)
        for path in root.rglob("*"):
            relative = path.relative_to(root).as_posix()
            if not guarded(relative) or path.is_symlink() or not path.is_file():
                continue
            info = path.stat()
            if self._seen.get(relative) == (info.st_size, info.st_mtime_ns):
                continue
            self._seen[relative] = (info.st_size, info.st_mtime_ns)
            changed |= self.add(relative, path.read_bytes())
        return changed

    def add_stored(self, *names: str) -> bool:
        """List the current version of files in the search folder in storage (Tune writes tuner.pkl there)."""
        changed = False
        for name in names:
            data = self._read(f"{self.folder}/{name}")
            if data is not None:
                changed |= self.add(name, data)
        return changed

    def save(self) -> None:
        """Write the signed list to storage (a local file is replaced atomically)."""
        body = json.dumps({"search": self.search_name, "files": self.versions}, sort_keys=True)
        text = json.dumps({"signed": body, "hmac": integrity.sign(self.key, body.encode())})
        self.fs.create_dir(self.folder, recursive=True)
        partial = f"{self.path}.partial"
        with self.fs.open_output_stream(partial) as out:
            out.write(text.encode())
        self.fs.move(partial, self.path)

    # --- checking ---------------------------------------------------------------------------------------------

    def load(self) -> None:
        """Read the signed list this search saved; IntegrityError when there is none or it is not Kiln's."""
        raw = self._read(self.path)
        if raw is None:
            raise integrity.IntegrityError(
                f"--resume: search {self.search_name} has no {SIGNATURE_FILE} (it was made by a Kiln that did not "
                "sign searches, or stopped before its first save); run without --resume to start a new search"
            )
        try:
            outer = json.loads(raw)
            body, mac = outer["signed"], outer["hmac"]
            ok = isinstance(body, str) and isinstance(mac, str) and integrity.matches(self.key, body.encode(), mac)
            inner = json.loads(body) if ok else None
        except (ValueError, KeyError, TypeError):
            ok, inner = False, None
        if not ok or inner.get("search") != self.search_name or not isinstance(inner.get("files"), dict):
            raise integrity.IntegrityError(
                f"--resume: {self.path}: not signed with this key ({integrity.KEY_ENV} names a team's key) or "
                "altered; refusing to resume the search"
            )
        self.versions = {str(k): [str(d) for d in v] for k, v in inner["files"].items() if isinstance(v, list)}

    def check(self) -> int:
        """load, then verify: what a resume does before Tune reads anything of the folder."""
        self.load()
        return self.verify()

    def verify(self) -> int:
        """Every guarded file of the search folder in storage is a version this search wrote; else
        IntegrityError naming the first that is not. Returns how many files were checked."""
        import pyarrow.fs

        infos = self.fs.get_file_info(pyarrow.fs.FileSelector(self.folder, recursive=True))
        checked = 0
        for info in sorted(infos, key=lambda i: i.path):
            relative = info.path[len(self.folder) + 1 :]
            if not guarded(relative):
                continue
            data = self._read(info.path) if info.type == pyarrow.fs.FileType.File else None
            if data is None or sha256(data) not in self.versions.get(relative, ()):
                raise integrity.IntegrityError(
                    f"--resume: {info.path}: not a file search {self.search_name} saved (changed, added or not a "
                    "plain file since); refusing to resume, as Tune would unpickle it"
                )
            checked += 1
        return checked

    def _read(self, path: str) -> bytes | None:
        try:
            with self.fs.open_input_stream(path) as stream:
                return stream.read()
        except OSError:
            return None


def staging_folder(trials) -> str | None:
    """Tune's local driver staging folder of this search, from its trials (None before the first)."""
    for trial in trials:
        path = getattr(getattr(trial, "storage", None), "experiment_driver_staging_path", None)
        if path and os.path.isdir(path):
            return path
    return None


def signing_callback(fs, folder: str, search_name: str):
    """A Tune callback (driver side) that signs each version of Tune's state files at the end of every step,
    when Tune has just written them to its staging folder, and once more when the experiment ends (after
    Tune's last save). The key is read in the driver and never pickled with the callback."""
    from ray.tune import Callback

    class Signing(Callback):
        def __init__(self):
            self.signature: SearchSignature | None = None

        def __getstate__(self):  # Tune pickles callbacks into tuner.pkl: no key, no open filesystem state
            return {}

        def __setstate__(self, state):
            self.signature = None

        def setup(self, **info):
            self.signature = SearchSignature(fs, folder, search_name)
            try:  # what the driver signed before fit (tuner.pkl) and, resumed, what earlier sessions signed
                self.signature.load()
            except integrity.IntegrityError:
                pass

        def on_step_end(self, iteration, trials, **info):
            self._sign(trials)

        def on_experiment_end(self, trials, **info):
            self._sign(trials)

        def _sign(self, trials):
            staging = staging_folder(trials)
            if self.signature is None:
                self.setup()
            if staging and self.signature.add_local(staging):
                self.signature.save()

    return Signing()
