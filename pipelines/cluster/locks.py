"""Locks under storage.root, where it is a local folder: the kernel holds them for a live process and drops them when
the process dies, however it dies. On an object store there is no such lock, and these hold nothing."""

from __future__ import annotations

import time
from contextlib import contextmanager

from pipelines.cluster import storage
from pipelines.config import KilnConfig


class Lock:
    """An exclusive lock on `storage.root/<relative>`, waiting up to `wait_s` for another process to drop it;
    `taken` is False when it could not be had in time (on a local folder) and True on an object store."""

    def __init__(self, cfg: KilnConfig, relative: str, wait_s: float = 0.0):
        import fcntl

        import pyarrow.fs

        self.handle, self.taken = None, True
        fs, root = storage.filesystem(cfg)
        if not isinstance(fs, pyarrow.fs.LocalFileSystem):
            return
        path = f"{root}/{relative}"
        fs.create_dir(path.rsplit("/", 1)[0], recursive=True)
        handle = open(path, "a")  # noqa: SIM115 (held until release)
        deadline = time.monotonic() + wait_s
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    handle.close()
                    self.taken = False
                    return
                time.sleep(0.1)
            except OSError:  # a filesystem without flock (some network mounts): no lock, as on an object store
                handle.close()
                return
        self.handle = handle

    def release(self) -> None:
        if self.handle is not None:
            self.handle.close()
            self.handle = None


def take(cfg: KilnConfig, relative: str, wait_s: float, busy: str, error: type[Exception] = RuntimeError) -> Lock:
    """The lock, held until its release(); error(busy) when another process keeps it past `wait_s`."""
    lock = Lock(cfg, relative, wait_s)
    if not lock.taken:
        raise error(busy)
    return lock


@contextmanager
def held(cfg: KilnConfig, relative: str, wait_s: float, busy: str, error: type[Exception] = RuntimeError):
    """The lock for the block's duration; error(busy) when another process keeps it past `wait_s`."""
    lock = take(cfg, relative, wait_s, busy, error)
    try:
        yield
    finally:
        lock.release()
