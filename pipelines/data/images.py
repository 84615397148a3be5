"""Images as the network gets them: decoded and resized to data.image_size, as uint8 pixels (the model
standardises them on its device); and the folder layouts they come in. Pure PIL and numpy (no Ray, no torch).

A cell of an image column holds encoded bytes (PNG, JPEG, WebP: a parquet `binary` column, or what a request
sends as base64) or, in a training table only, a path to a file. A request never names a path: an endpoint
that opened files a client names would read the server's disk.
"""

from __future__ import annotations

import io
from collections.abc import Iterable
from pathlib import Path

import numpy as np

SUFFIXES = (".png", ".jpg", ".jpeg", ".webp")
TABLE_SUFFIXES = (".csv", ".parquet", ".pq")
FORMATS = ("PNG", "JPEG", "WEBP")  # the only decoders PIL may use: not EPS (Ghostscript), TIFF, PSD, ...
DEFAULT_MAX_PIXELS = 16_000_000  # serve.max_image_pixels: a decompression bomb stops here


class ImageError(ValueError):
    """A cell that is not an image Kiln can use; the message names why."""


def is_image_cell(value) -> bool:
    if isinstance(value, bytes | bytearray | memoryview):
        return True
    return isinstance(value, str) and value.lower().endswith(SUFFIXES)


class PixelBudget:
    """The pixels one request may decode in all (serve.max_request_pixels), spent from each image's header
    before it is decoded: a small body of highly compressed, huge images costs no more than this."""

    def __init__(self, limit: int):
        self.limit, self.spent = limit, 0

    def spend(self, width: int, height: int) -> None:
        self.spent += width * height
        if self.spent > self.limit:
            raise ImageError(
                f"the request's images hold over {self.limit:,} pixels in all "
                "(serve.max_request_pixels): send them in parts"
            )


def open_image(
    value, *, max_pixels: int | None = DEFAULT_MAX_PIXELS, allow_paths: bool = False, budget: PixelBudget | None = None
):
    """A PIL image from bytes, or from a path where `allow_paths` (a training table's file names: never a
    request's); ImageError for anything else, a corrupt file, another format, too many pixels, or more than
    the request's `budget` has left."""
    from PIL import Image

    if isinstance(value, bytes | bytearray | memoryview):
        source = io.BytesIO(bytes(value))
    elif isinstance(value, str) and allow_paths:
        source = value
    elif isinstance(value, str):
        raise ImageError("a file name where image bytes are expected (only a training table may name files)")
    else:
        raise ImageError(f"expected image bytes, got {type(value).__name__}")
    try:
        image = Image.open(source, formats=FORMATS)
        if max_pixels is not None and image.width * image.height > max_pixels:
            raise ImageError(f"{image.width}x{image.height} is over {max_pixels:,} pixels")
        if budget is not None:
            budget.spend(image.width, image.height)
        image.load()
    except ImageError:
        raise
    except Image.UnidentifiedImageError:
        raise ImageError("not a PNG, JPEG or WebP image") from None
    except (OSError, ValueError, Image.DecompressionBombError) as err:
        raise ImageError(f"cannot decode the image ({' '.join(str(err).split())[:120]})") from None
    return image


def pixels(
    value,
    *,
    size: int,
    channels: int,
    max_pixels: int | None = DEFAULT_MAX_PIXELS,
    allow_paths: bool = False,
    budget: PixelBudget | None = None,
) -> np.ndarray:
    """[channels, size, size] uint8: grey (channels 1) or RGB (3), resized with bilinear filtering."""
    from PIL import Image

    image = open_image(value, max_pixels=max_pixels, allow_paths=allow_paths, budget=budget)
    image = image.convert("L" if channels == 1 else "RGB")
    if image.size != (size, size):
        image = image.resize((size, size), Image.Resampling.BILINEAR)
    array = np.asarray(image, dtype=np.uint8)
    return array[None] if channels == 1 else array.transpose(2, 0, 1)


def describe(values, *, limit: int = 200) -> tuple[int, int]:
    """(side, channels) for the images among the first `limit`: the median side, and 3 when any is in colour."""
    sides, colour = [], False
    for value in list(values)[:limit]:
        try:
            image = open_image(value, allow_paths=True)
        except ImageError as err:
            raise ImageError(f"{value}: {err}" if isinstance(value, str) else str(err)) from None
        sides.append(max(image.size))
        colour = colour or image.mode not in ("L", "LA", "1", "I", "I;16", "F")
    return int(np.median(sides)) if sides else 32, 3 if colour else 1


def class_folders(root: Path) -> list[tuple[str, str]]:
    """(path, label) of every image in `root/<label>/<file>` (torchvision's ImageFolder layout), sorted. Hidden
    names are skipped: a `.ipynb_checkpoints` folder is no class, and macOS's `._photo.jpg` is no image."""
    found = []
    for folder in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        for file in sorted(folder.iterdir()):
            if file.suffix.lower() not in SUFFIXES or file.name.startswith("."):
                continue
            # The user named this folder, so a link to their own files elsewhere is theirs to make; a FIFO or a
            # device named like an image would hang or flood ingest.
            if not file.is_file():
                raise ImageError(f"{file}: not a regular file (a FIFO, a device or a folder named like an image)")
            found.append((str(file), folder.name))
    return found


def file_under(folder: Path, name: str) -> Path:
    """`name` under `folder` (resolved: symlinks followed) when it is a regular file there; ImageError naming why
    not. A table's file names cannot make Kiln read /etc/shadow, climb out with ../ or a symlink, or hang on a
    FIFO named x.png."""
    path = (folder / name).resolve()
    if Path(name).is_absolute() or not path.is_relative_to(folder):
        raise ImageError(f"{name!r} is outside the table's folder {folder}; image file names are relative to it")
    if not path.is_file():  # is_file: a regular file (a FIFO, device or folder is not)
        raise ImageError(f"{name!r} is not a file under {folder}")
    return path


def image_files(root: Path, entries: Iterable[Path]) -> list[str]:
    """Every image file's name among `entries` (root.rglob's), relative to `root`, sorted; hidden names (and
    anything in a hidden folder) are skipped. A folder to score: the names are checked as a table's are when
    read."""
    return sorted(
        str(p.relative_to(root))
        for p in entries
        if p.suffix.lower() in SUFFIXES and not any(part.startswith(".") for part in p.relative_to(root).parts)
    )


def holds_tables(entries: Iterable[Path]) -> bool:
    """Whether any of `entries` is a CSV or parquet file: a folder holding one is a table, not an image set."""
    return any(p.suffix.lower() in TABLE_SUFFIXES for p in entries)


def is_class_folder_tree(root: Path) -> bool:
    """A folder of folders holding images, and no tables anywhere in it: data.source as an image set (a table
    beside an images/ folder of the files it names is a table)."""
    if holds_tables(root.rglob("*")):
        return False
    folders = [p for p in root.iterdir() if p.is_dir()]
    return bool(folders) and any(f.suffix.lower() in SUFFIXES for d in folders for f in d.iterdir())
