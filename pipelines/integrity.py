"""What a registered version holds, as one sha256 over its files, recorded when it is registered and checked
before Kiln serves, promotes or rolls back to it: whoever can write the store's artifact folder cannot swap
weights, preprocessing or the model's code under a version unnoticed."""

from __future__ import annotations

import hashlib
from pathlib import Path

TAG = "kiln.sha256"


def digest(folder: str | Path) -> str:
    """sha256 over every file under `folder`: each relative path and its bytes, in path order."""
    root = Path(folder)
    total = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        total.update(path.relative_to(root).as_posix().encode() + b"\0")
        with path.open("rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                total.update(chunk)
        total.update(b"\0")
    return total.hexdigest()


class IntegrityError(RuntimeError):
    """A version's files are not what was registered (or it was registered without a digest)."""
