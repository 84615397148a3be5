"""The search as it goes, in the terminal: a Tune callback (driver side) that prints trial events."""

from __future__ import annotations

import sys
import time

from pipelines.console import describe_sample, say

# Trial id -> the sampler that proposed its config (tune.search tpe: "random" for its start-up trials, then "tpe";
# sampler.PruningOptunaSearch writes it). Process-wide, so it outlives Tune's pickling of the searcher and of this
# callback across a --resume.
PROPOSED_BY: dict[str, str] = {}


def progress_callback(
    metric: str, mode: str, num_samples: int, max_epochs: int, *, live: bool | None = None, copies: bool = False
):
    """A Tune callback showing the search as it goes: a live panel in a terminal (rich), one line
    per event otherwise (CI logs). `copies`: a trial that starts again has copied another's checkpoint (pbt),
    not been promoted at a rung."""
    from ray.tune import Callback

    live = sys.stdout.isatty() if live is None else live

    class Progress(Callback):
        def __init__(self):
            self.started = time.perf_counter()
            self.running: dict[str, int] = {}  # trial id -> epochs so far (paused trials too)
            self.paused: set[str] = set()  # paused at a rung, waiting for promotion (tune.scheduler.name: asha_promote)
            self.done, self.stopped_early, self.failed = 0, 0, 0
            self.best: tuple[float, str, str] | None = None  # value, trial id, config
            self.view = None

        def __getstate__(self):  # Tune pickles callbacks; the live view stays in this process
            return {k: v for k, v in self.__dict__.items() if k != "view"}

        def __setstate__(self, state):  # a resumed search restores this callback from Tune's pickle
            self.__dict__.update(state, view=None)
            self.__dict__.setdefault("paused", set())

        def on_trial_start(self, iteration, trials, trial, **info):
            if trial.trial_id in self.running:  # paused at a rung (tune.scheduler.name: asha_promote), now on again
                self.paused.discard(trial.trial_id)
                epoch = self.running[trial.trial_id]
                self._event(
                    f"trial {trial.trial_id} goes on from the checkpoint it copied"
                    if copies
                    else f"trial {trial.trial_id} promoted: resumes after epoch {epoch}"
                )
                return
            self.running[trial.trial_id] = 0
            proposer = PROPOSED_BY.get(trial.trial_id)
            self._event(
                f"trial {trial.trial_id} started ({len(self.running) + self._ended()}/{num_samples}"
                f"{f', proposed by {proposer}' if proposer else ''}): {describe_sample(trial.config)}"
            )

        def on_trial_result(self, iteration, trials, trial, result, **info):
            value, epoch = result.get(metric), result.get("epoch", 0)
            self.running[trial.trial_id] = epoch
            if isinstance(value, int | float):
                better = self.best is None or (value > self.best[0] if mode == "max" else value < self.best[0])
                if better:
                    self.best = (value, trial.trial_id, describe_sample(trial.config))
                self._event(f"trial {trial.trial_id} epoch {epoch}: {metric}={value:.4f}")

        def on_step_end(self, iteration, trials, **info):
            # Tune has no pause hook: a trial the scheduler paused shows as PAUSED after the step that judged it.
            for trial in trials:
                if trial.status == "PAUSED" and trial.trial_id in self.running and trial.trial_id not in self.paused:
                    self.paused.add(trial.trial_id)
                    if not copies:  # pbt pauses a trial only to copy another: the scheduler said which
                        self._event(
                            f"trial {trial.trial_id} paused after epoch {self.running[trial.trial_id]}: "
                            "resumes if it ranks in its rung's top"
                        )

        def on_trial_complete(self, iteration, trials, trial, **info):
            self.paused.discard(trial.trial_id)
            epochs = self.running.pop(trial.trial_id, 0)
            self.done += 1
            early = epochs < max_epochs
            self.stopped_early += early
            self._event(
                f"trial {trial.trial_id} "
                + (f"stopped early by the scheduler after {epochs} epochs" if early else f"finished {epochs} epochs")
            )

        def on_trial_error(self, iteration, trials, trial, **info):
            self.running.pop(trial.trial_id, None)
            self.failed += 1
            self._event(f"trial {trial.trial_id} failed (see --verbose)")

        def on_experiment_end(self, trials, **info):
            if self.view is not None:
                self.view.stop()
                self.view = None

        def _ended(self) -> int:
            return self.done + self.failed

        def _event(self, line: str) -> None:
            if not live:
                say(f"  [{time.perf_counter() - self.started:5.0f}s] {line}")
                return
            if self.view is None:
                from rich.live import Live

                self.view = Live(self._panel(), refresh_per_second=4, transient=False)
                self.view.start()
            self.view.update(self._panel())

        def _panel(self):
            from rich.table import Table

            elapsed = time.perf_counter() - self.started
            table = Table.grid(padding=(0, 2))
            running = len(self.running) - len(self.paused)
            table.add_row(
                "trials",
                f"{running} running, {len(self.paused)} paused, {self.done} finished "
                f"({self.stopped_early} stopped early), {self.failed} failed, of {num_samples}",
            )
            for trial_id, epochs in sorted(self.running.items()):
                table.add_row(
                    "", f"{trial_id}: epoch {epochs}/{max_epochs}" + (" (paused)" if trial_id in self.paused else "")
                )
            if self.best:
                table.add_row(f"best {metric}", f"{self.best[0]:.4f}  ({self.best[1]}: {self.best[2]})")
            eta = elapsed / self._ended() * (num_samples - self._ended()) if self._ended() else None
            table.add_row("elapsed", f"{elapsed:.0f} s" + (f", about {eta:.0f} s to go" if eta is not None else ""))
            return table

    return Progress()
