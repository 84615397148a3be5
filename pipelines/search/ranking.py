"""Which epoch of a trial is its best: the order Ray Train's checkpoint manager keeps checkpoints in.

Ray ranks a run's checkpoints by `checkpoint_score_attribute` and, among equal scores, ranks the later
report higher; with `num_to_keep` it deletes from the bottom of that order (never the latest). Choosing
the best epoch by any other rule (the first row with the best score, say) can pick a checkpoint Ray has
already deleted. Every place Kiln names a trial's best epoch (the trials table, the report, the registry
tags) goes through `rank`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass

CHECKPOINT_PATH_KEY = "checkpoint_path"  # a report's persisted checkpoint, added by trial.ReportQueue


@dataclass(frozen=True)
class Candidate:
    epoch: int
    value: float
    checkpoint: str | None = None


def rank(candidates: Iterable[Candidate], mode: str) -> list[Candidate]:
    """Best first: by value (`mode` max or min), then the later epoch, then the later report (an epoch
    recomputed after a worker failure). NaN ranks last, as in Ray. `candidates` come in report order."""
    sign = 1.0 if mode == "max" else -1.0

    def key(item: tuple[int, Candidate]) -> tuple[bool, float, int, int]:
        index, c = item
        finite = not math.isnan(c.value)
        return finite, sign * c.value if finite else 0.0, c.epoch, index

    return [c for _, c in sorted(enumerate(candidates), key=key, reverse=True)]


def best_epoch(history: Iterable[tuple[int, float]], mode: str) -> tuple[int, float] | None:
    """The (epoch, value) a trial's metric history names as best, with Ray's tie-break."""
    ranked = rank((Candidate(int(epoch), float(value)) for epoch, value in history), mode)
    return (ranked[0].epoch, ranked[0].value) if ranked else None


@dataclass(frozen=True)
class Choice:
    chosen: Candidate | None
    note: str | None = None  # set when the best-ranked checkpoint was missing


def choose_existing(ranked: list[Candidate], exists: Callable[[str], bool]) -> Choice:
    """The best-ranked checkpoint that still exists. Ray keeps the best-ranked one, so a fall-back
    (and its note) means someone or something deleted it."""
    with_checkpoint = [c for c in ranked if c.checkpoint]
    for candidate in with_checkpoint:
        if exists(candidate.checkpoint):
            if candidate is with_checkpoint[0]:
                return Choice(candidate)
            top = with_checkpoint[0]
            return Choice(
                candidate,
                f"the checkpoint of epoch {top.epoch} ({top.value:.4f}) is missing at "
                f"{top.checkpoint}; using epoch {candidate.epoch}'s ({candidate.value:.4f})",
            )
    return Choice(None)
