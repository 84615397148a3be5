"""How `kiln` stops on SIGINT and SIGTERM, whatever started it.

Both raise KeyboardInterrupt in the main thread, so every stage unwinds through the same `finally`s and
`kiln` ends with 128 + the signal's number (130 for SIGINT, 143 for SIGTERM) after stopping what it started.
- Installed first thing, even where the parent ignored SIGINT (a non-interactive shell's `cmd &`, some
  supervisors): Python leaves an ignored SIGINT ignored, and then Ctrl-C never reached the run.
- Installed again after `ray.init`, whose SIGTERM handler calls `sys.exit(15)` mid-stage.
- While Ray Tune runs a search its own SIGINT handler ends the search gracefully (resumable); SIGTERM is handed
  to that same handler, so a supervisor's stop is as clean as a Ctrl-C.
- `wait_forever` sleeps in short steps: a signal delivered to another of the process's threads is run by
  Python in the main thread only when that thread next runs, which `signal.pause()` never does.
"""

from __future__ import annotations

import os
import signal
import time

_received: list[int] = []


def install() -> None:
    """Kiln's handlers for SIGINT and SIGTERM (main thread only, as Python requires)."""
    signal.signal(signal.SIGINT, _interrupt)
    signal.signal(signal.SIGTERM, _terminate)


def _interrupt(signum: int, frame) -> None:
    _received.append(signum)
    raise KeyboardInterrupt


def _terminate(signum: int, frame) -> None:
    """SIGTERM as SIGINT: through whatever SIGINT handler is current (Tune's, while a search runs)."""
    _received.append(signum)
    current = signal.getsignal(signal.SIGINT)
    if callable(current) and current is not _interrupt:
        current(signal.SIGINT, frame)
        return
    raise KeyboardInterrupt


def stop_requested() -> bool:
    """Whether a stop signal came (in this process), Tune's graceful SIGINT included: Tune's handler puts back the
    one it found (ours) when it fires, and otherwise stays installed after the search."""
    tune_handles_sigint = os.environ.get("TUNE_DISABLE_SIGINT_HANDLER", "0") in ("", "0")
    return bool(_received) or (tune_handles_sigint and signal.getsignal(signal.SIGINT) is _interrupt)


def exit_code() -> int:
    """128 + the first stop signal received (SIGINT when none was: a KeyboardInterrupt raised otherwise)."""
    return 128 + (_received[0] if _received else signal.SIGINT)


def wait_forever(step_s: float = 0.2) -> None:
    """Sleep until a signal's handler raises."""
    while True:
        time.sleep(step_s)
