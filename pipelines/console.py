"""What Kiln prints: stage lines with durations, notes, errors, a sampled config in one line."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any


def say(*lines: str) -> None:
    """Lines for the user, on stdout."""
    print(*lines or ("",), sep="\n", flush=True)


def note(message: str) -> None:
    """Progress and notes beside machine-readable output: on stderr, so stdout stays parseable."""
    print(message, file=sys.stderr, flush=True)


@contextmanager
def stage(name: str, timings: dict[str, float]) -> Iterator[None]:
    say(f"» {name} ...")
    started = time.perf_counter()
    try:
        yield
    except BaseException as err:  # the error's own line follows (cli.main); this one names where it happened
        what = "interrupted" if isinstance(err, KeyboardInterrupt) else "failed"
        say(f"✗ {name:<9} {what} after {time.perf_counter() - started:.1f} s")
        raise
    timings[name] = time.perf_counter() - started
    say(f"✓ {name:<9} {timings[name]:6.1f} s")


def table(header: list[str], rows: list[list[str]]) -> str:
    """Columns padded to their widest cell, a rule under the header."""
    widths = [max(len(str(c)) for c in column) for column in zip(header, *rows, strict=True)]
    lines = ["  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in [header, *rows]]
    return "\n".join([lines[0], "  ".join("-" * w for w in widths), *lines[1:]])


def describe_sample(sample: dict[str, Any]) -> str:
    return ", ".join(f"{k}={_short(v)}" for k, v in sample.items()) or "(base config)"


def _short(value: Any) -> str:
    return f"{value:.3g}" if isinstance(value, float) else str(value).replace(" ", "")


def error(message: str) -> None:
    print(f"kiln: error: {message}", file=sys.stderr, flush=True)
