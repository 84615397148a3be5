"""What a registered version holds, as one HMAC-SHA256 over its files under a key that lives outside the store,
recorded when it is registered and checked before Kiln serves, promotes or rolls back to it: whoever can write
the store (a shared MLflow server, a shared bucket) but not the key cannot swap weights, preprocessing or the
model's code under a version and sign it again.

The key is `~/.config/kiln/signing.key` (created on first use, mode 0600), or the file KILN_SIGNING_KEY_FILE
names (a team's shared key). Every process that registers, serves or resumes needs the same key.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import stat
from pathlib import Path

from pipelines.errors import ConfigError

TAG = "kiln.hmac"  # the version's files under the signing key
LEGACY_TAG = "kiln.sha256"  # an unkeyed digest (Kiln before keys): anyone who can write the store can reset it
KEY_ENV = "KILN_SIGNING_KEY_FILE"
DEFAULT_KEY = "~/.config/kiln/signing.key"
KEY_BYTES = 32


class IntegrityError(RuntimeError):
    """A version's or a search's files are not what was signed (or were never signed)."""


def key_file() -> Path:
    return Path(os.environ.get(KEY_ENV) or DEFAULT_KEY).expanduser()


def signing_key() -> bytes:
    """The signing key: KILN_SIGNING_KEY_FILE's, or this user's own (created on first use). A key file must be
    a regular file (not a link) that nobody but its owner can write, holding at least 32 bytes as hex."""
    path, named = key_file(), bool(os.environ.get(KEY_ENV))
    where = f"{KEY_ENV} {path}" if named else f"signing key {path}"
    if not named and not os.path.lexists(path):
        _create(path)
    try:  # O_NONBLOCK: a FIFO in its place must not hang Kiln waiting for a writer
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError as err:
        raise ConfigError(f"{where}: cannot open it ({err.strerror}); {_how(named)}") from None
    with os.fdopen(fd, "rb") as fh:
        info = os.fstat(fh.fileno())
        if not stat.S_ISREG(info.st_mode):
            raise ConfigError(f"{where}: not a regular file")
        if info.st_mode & 0o022:
            raise ConfigError(f"{where}: others can write it (mode {stat.filemode(info.st_mode)}); chmod 600 it")
        text = fh.read(1024).decode("ascii", "replace").strip()
    try:
        key = bytes.fromhex(text)
    except ValueError:
        key = b""
    if len(key) < KEY_BYTES:
        raise ConfigError(f"{where}: expected at least {KEY_BYTES} bytes written as hex")
    return key


def _how(named: bool) -> str:
    if named:
        return f"point {KEY_ENV} at your team's key file, or unset it to use your own"
    return "remove it to have Kiln create a new one (versions signed with the old key then need registering again)"


def _create(path: Path) -> None:
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    except FileExistsError:  # another Kiln process made it first
        return
    with os.fdopen(fd, "w") as fh:
        fh.write(secrets.token_hex(KEY_BYTES) + "\n")


def sign(key: bytes, data: bytes) -> str:
    """HMAC-SHA256 of `data` under `key`, as hex."""
    return hmac.new(key, data, hashlib.sha256).hexdigest()


def matches(key: bytes, data: bytes, signature: str) -> bool:
    return hmac.compare_digest(sign(key, data), signature)


def digest(folder: str | Path, key: bytes) -> str:
    """HMAC-SHA256 under `key` of every file under `folder`: for each, in path order, its relative path and its
    bytes, each preceded by its length (no two folders frame the same). A link or anything that is not a plain
    file or folder is refused (IntegrityError naming it): a version holds files only."""
    root = Path(folder)
    mac = hmac.new(key, b"kiln-version-1\0", hashlib.sha256)
    for relative, path in files(root):
        name = relative.encode()
        mac.update(len(name).to_bytes(8, "big") + name)
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
        with os.fdopen(fd, "rb") as fh:
            mac.update(os.fstat(fh.fileno()).st_size.to_bytes(8, "big"))
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                mac.update(chunk)
    return mac.hexdigest()


# What MLflow itself writes into a version's folder after registration: mlflow.pyfunc.load_model("models:/...")
# on a local store records the name and version there. Kiln never reads it, so it is left out of the signature.
UNSIGNED = {"registered_model_meta"}


def matches_folder(folder: str | Path, key: bytes, signature: str) -> bool:
    return hmac.compare_digest(digest(folder, key), signature)


def files(root: Path) -> list[tuple[str, Path]]:
    """(relative path, path) of every signed file under `root`, in path order; IntegrityError for a link or a
    special file."""
    found: list[tuple[str, Path]] = []
    pending = [root]
    while pending:
        with os.scandir(pending.pop()) as entries:
            for entry in entries:
                path = Path(entry.path)
                if path.parent == root and entry.name in UNSIGNED and entry.is_file(follow_symlinks=False):
                    continue
                if entry.is_dir(follow_symlinks=False):
                    pending.append(path)
                elif entry.is_file(follow_symlinks=False):
                    found.append((path.relative_to(root).as_posix(), path))
                else:
                    raise IntegrityError(f"{path}: a link or special file, where a version holds plain files only")
    return sorted(found)
