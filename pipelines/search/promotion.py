"""Promotion-based ASHA (Li et al., "A System for Massively Parallel Hyperparameter Tuning"), as plain records.

A trial that reaches a rung is recorded there. It goes on at once if it ranks in the top 1/eta of the trials
recorded at that rung so far; otherwise it pauses (with a checkpoint) and waits. Whenever a trial can be started,
a paused trial that now ranks in its rung's top 1/eta is promoted first, from the highest rung down; only then
does a new trial start. With a finite number of trials, once nothing is running or waiting to start, a rung's
best unpromoted trial is promoted when no trial of that rung has been yet (so the search's best reaches the last
epoch), and the trials left paused are stopped. Trials level on the metric at a rung (on a small val split
accuracy moves in steps of one row) are ranked by their val_loss there, lower first, as the search's own best
trial is chosen (search.tuner.pick_best); then the earlier recorded goes first. Ray's own ASHAScheduler only
stops trials: the first trials pass every rung unchallenged and train to the end. The Tune side is
scheduler.PromotionScheduler.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field

CONTINUE, PAUSE = "continue", "pause"


@dataclass
class Rungs:
    milestones: list[int]  # epochs, lowest first, all below the last epoch
    eta: float
    mode: str  # "max" or "min": which way tune.metric is better
    recorded: list[dict[str, float]] = field(default_factory=list)  # per rung: trial id -> metric there
    promoted: list[list[str]] = field(default_factory=list)  # per rung: trials that went on past it
    tiebreak: list[dict[str, float]] = field(default_factory=list)  # per rung: trial id -> val_loss there

    def __post_init__(self):
        self.recorded = self.recorded or [{} for _ in self.milestones]
        self.promoted = self.promoted or [[] for _ in self.milestones]
        self.tiebreak = self.tiebreak or [{} for _ in self.milestones]  # records saved before it had none

    def on_result(self, trial_id: str, epoch: int, value: float, tiebreak: float = math.nan) -> str:
        """A trial reported `value` (and `tiebreak`, its val_loss: lower is better) after `epoch`: CONTINUE, or
        PAUSE at the rung it just reached."""
        rung = self.rung_at(epoch)
        if rung is None or trial_id in self.promoted[rung]:
            return CONTINUE  # between rungs, past the last one, or a report repeated after promotion
        if trial_id not in self.recorded[rung]:
            self.recorded[rung][trial_id] = value if value == value else self.worst
            self.tiebreak[rung][trial_id] = tiebreak if tiebreak == tiebreak else math.inf
        if trial_id in self.top(rung, final=False):
            self.promoted[rung].append(trial_id)
            return CONTINUE
        return PAUSE

    def rung_at(self, epoch: int) -> int | None:
        """The rung a report at `epoch` is judged at: the one whose milestone it is (every epoch reports)."""
        return self.milestones.index(epoch) if epoch in self.milestones else None

    def top(self, rung: int, *, final: bool) -> list[str]:
        """The trials ranked in the top 1/eta of those recorded at `rung`, best first (ties: the lower val_loss,
        then the earlier recorded). `final`: nothing else can run, so a rung with no promotion yet promotes its best."""
        ranked = sorted(self.recorded[rung], key=self._order(rung))
        count = math.floor(len(ranked) / self.eta + 1e-9)
        if final and not self.promoted[rung]:
            count = max(count, 1)
        return ranked[:count]

    def next_promotion(self, paused: set[str], *, final: bool = False) -> str | None:
        """The paused trial to resume, highest rung first, marked promoted; None when no paused trial ranks."""
        for rung in reversed(range(len(self.milestones))):
            for trial_id in self.top(rung, final=final):
                # A trial recorded at a higher rung was promoted from this one, so an unpromoted paused trial
                # waits here.
                if trial_id in paused and trial_id not in self.promoted[rung]:
                    self.promoted[rung].append(trial_id)
                    return trial_id
        return None

    @property
    def worst(self) -> float:
        return -math.inf if self.mode == "max" else math.inf

    def _order(self, rung: int):
        sign = -1.0 if self.mode == "max" else 1.0
        order = {trial_id: i for i, trial_id in enumerate(self.recorded[rung])}
        tiebreak = self.tiebreak[rung]
        return lambda trial_id: (
            sign * self.recorded[rung][trial_id],
            tiebreak.get(trial_id, math.inf),
            order[trial_id],
        )

    def to_dict(self) -> dict:
        return {
            "milestones": self.milestones,
            "eta": self.eta,
            "mode": self.mode,
            "recorded": self.recorded,
            "promoted": self.promoted,
            "tiebreak": self.tiebreak,
        }

    @classmethod
    def from_dict(cls, raw: dict) -> Rungs:
        return cls(
            list(raw["milestones"]),
            float(raw["eta"]),
            raw["mode"],
            [dict(r) for r in raw["recorded"]],
            [list(p) for p in raw["promoted"]],
            [dict(t) for t in raw.get("tiebreak", [])],
        )


@dataclass
class Brackets:
    """Hyperband's brackets over promotion: each its own rungs (bracket s starting at grace * eta**s), trials dealt
    to them in the order they first report."""

    brackets: list[Rungs]
    assigned: dict[str, int] = field(default_factory=dict)  # trial id -> bracket

    @classmethod
    def build(cls, milestones: list[list[int]], eta: float, mode: str) -> Brackets:
        return cls([Rungs(list(m), eta, mode) for m in milestones])

    def on_result(self, trial_id: str, epoch: int, value: float, tiebreak: float = math.nan) -> str:
        if trial_id not in self.assigned:
            self.assigned[trial_id] = len(self.assigned) % len(self.brackets)
        return self.brackets[self.assigned[trial_id]].on_result(trial_id, epoch, value, tiebreak)

    def next_promotion(self, paused: set[str], *, final: bool = False) -> str | None:
        for index, rungs in enumerate(self.brackets):
            mine = {t for t in paused if self.assigned.get(t) == index}
            if found := rungs.next_promotion(mine, final=final):
                return found
        return None

    @property
    def milestones(self) -> list[list[int]]:
        return [b.milestones for b in self.brackets]

    def to_json(self) -> str:
        return json.dumps({"brackets": [b.to_dict() for b in self.brackets], "assigned": self.assigned})

    @classmethod
    def from_json(cls, text: str) -> Brackets:
        raw = json.loads(text)
        return cls([Rungs.from_dict(b) for b in raw["brackets"]], dict(raw["assigned"]))
