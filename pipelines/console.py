"""What a run prints: stage lines with durations, trial events, the trials table."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any


def say(message: str = "") -> None:
    print(message, flush=True)


@contextmanager
def stage(name: str, timings: dict[str, float]) -> Iterator[None]:
    say(f"» {name} ...")
    started = time.perf_counter()
    yield
    timings[name] = time.perf_counter() - started
    say(f"✓ {name:<9} {timings[name]:6.1f} s")


def describe_sample(sample: dict[str, Any]) -> str:
    return ", ".join(f"{k}={_short(v)}" for k, v in sample.items()) or "(base config)"


def _short(value: Any) -> str:
    return f"{value:.3g}" if isinstance(value, float) else str(value).replace(" ", "")


def trials_table(trials, metric: str, best_id: str) -> str:
    header = f"  {'trial':<12} {'epochs':>6} {metric:>14}  {'stopped early':<13} config"
    lines = [header]
    for t in trials:
        value = f"{t.best_metric:.4f}" if t.best_metric is not None else "-"
        state = "error" if t.error else ("yes" if t.stopped_early else "no")
        mark = "*" if t.trial_id == best_id else " "
        lines.append(f"{mark} {t.trial_id:<12} {t.epochs_run:>6} {value:>14}  {state:<13} {describe_sample(t.sample)}")
    return "\n".join(lines)


def progress_callback(metric: str, num_samples: int):
    """A Tune callback printing one line per trial event (works in a terminal and in CI logs)."""
    from ray.tune import Callback

    class Progress(Callback):
        def __init__(self):
            self.started = time.perf_counter()
            self.count = 0

        def on_trial_start(self, iteration, trials, trial, **info):
            self.count += 1
            say(f"  [{self._elapsed()}] trial {trial.trial_id} started ({self.count}/{num_samples}): "
                f"{describe_sample(trial.config)}")

        def on_trial_result(self, iteration, trials, trial, result, **info):
            value = result.get(metric)
            if isinstance(value, int | float):
                say(f"  [{self._elapsed()}] trial {trial.trial_id} epoch {result.get('epoch')}: "
                    f"{metric}={value:.4f}")

        def on_trial_complete(self, iteration, trials, trial, **info):
            say(f"  [{self._elapsed()}] trial {trial.trial_id} done after {trial.last_result.get('epoch', 0)} epochs")

        def on_trial_error(self, iteration, trials, trial, **info):
            say(f"  [{self._elapsed()}] trial {trial.trial_id} failed (see --verbose)")

        def _elapsed(self) -> str:
            return f"{time.perf_counter() - self.started:5.0f}s"

    return Progress()


def error(message: str) -> None:
    print(f"kiln: error: {message}", file=sys.stderr, flush=True)
