"""The trial scheduler: ASHA (Ray's AsyncHyperBandScheduler, which stops trials), promotion-based ASHA (pauses and
promotes them: search.promotion) or FIFO, and where ASHA's rungs fall."""

from __future__ import annotations

import json
import math

from pipelines import console
from pipelines.cluster import storage
from pipelines.config import KilnConfig
from pipelines.search import promotion
from pipelines.search.space import CONTINUOUS, Domain, parse_search_space, to_tune_domain

RUNGS_FILE = "kiln-rungs.json"  # promotion's records, beside Tune's own: Tune does not save a scheduler's state
LINEAGE_FILE = "kiln-pbt-lineage.json"  # pbt: each copy, in order


def read_lineage(text: str | None) -> list[dict]:
    """pbt's copies as LINEAGE_FILE (or the parent run's pbt_lineage.json) holds them, each checked, since the file
    lives outside the process: a trial and the trial it copied (ids), the epoch (an int) and the new values
    (numbers). An entry of another shape is left out; text that is not a JSON list is no lineage."""
    try:
        entries = json.loads(text) if text else []
    except ValueError:
        return []
    if isinstance(entries, dict):
        entries = entries.get("copies", [])
    checked = []
    for entry in entries if isinstance(entries, list) else []:
        if not isinstance(entry, dict):
            continue
        ids, epoch = [entry.get("trial"), entry.get("copied")], entry.get("epoch")
        values = {k: v for k, v in entry.items() if k not in ("trial", "copied", "epoch")}
        if (
            all(isinstance(i, str) and 0 < len(i) <= 200 for i in ids)
            and isinstance(epoch, int)
            and not isinstance(epoch, bool)
            and all(isinstance(v, int | float) and not isinstance(v, bool) for v in values.values())
        ):
            checked.append(entry)
    return checked


def asha_rungs(grace_period: float, reduction_factor: float, max_epochs: float) -> list[float]:
    """Ray's ASHA milestones below max_epochs, lowest first: grace * eta**k. A trial is judged at the first
    epoch at or past each; Ray's rung at max_epochs itself, if any, stops nobody."""
    rungs, rung = [], float(grace_period)
    while rung < max_epochs:
        rungs.append(rung)
        rung *= reduction_factor
    return rungs


def build_scheduler(cfg: KilnConfig, search_name: str):
    from ray.tune.schedulers import ASHAScheduler, FIFOScheduler

    if cfg.tune.scheduler.name == "asha_promote":
        return promotion_scheduler(cfg, search_name)
    if cfg.tune.scheduler.name == "pbt":
        return population_scheduler(cfg, search_name)
    if cfg.tune.scheduler.name != "asha":
        return FIFOScheduler()
    # Rungs count epochs, not reports: after a worker-group restart an epoch may be reported twice.
    return ASHAScheduler(
        time_attr="epoch",
        max_t=cfg.train.epochs,
        grace_period=grace_period(cfg),
        reduction_factor=cfg.tune.scheduler.reduction_factor,
        brackets=cfg.tune.scheduler.brackets,
    )


def mutations(cfg: KilnConfig) -> dict[str, Domain]:
    """The keys pbt perturbs: every searched continuous key (uniform, loguniform), with its domain."""
    return {k: d for k, d in parse_search_space(cfg.tune.search_space).items() if d.kind in CONTINUOUS}


def population_scheduler(cfg: KilnConfig, search_name: str):
    """Ray's PopulationBasedTraining: every perturbation_interval epochs, a trial in the bottom quarter copies a
    top-quarter trial's latest checkpoint and config, then multiplies each continuous key by 0.8 or 1.2 or (one
    time in four) draws it afresh from its domain. The copy restarts from that checkpoint's weights, optimizer
    state and epoch (training.loop), so the learning-rate schedule goes on from where the copied trial was.
    Each copy is a terminal line and an entry of the search's lineage file (LINEAGE_FILE: who copied whom, at
    which epoch, with which new values)."""
    from ray.tune.schedulers import PopulationBasedTraining

    keys = mutations(cfg)

    class Population(PopulationBasedTraining):
        def __init__(self):
            super().__init__(
                time_attr="epoch",
                perturbation_interval=cfg.tune.scheduler.perturbation_interval,
                hyperparam_mutations={k: to_tune_domain(d) for k, d in keys.items()},
                quantile_fraction=0.25,
                resample_probability=0.25,
            )
            self.path = storage.search_file(cfg, search_name, LINEAGE_FILE)
            # a resumed search goes on with the copies made before it stopped
            self.lineage: list[dict] = read_lineage(storage.read_text(cfg, self.path))

        def on_trial_add(self, tune_controller, trial):
            """A trial that --resume brings back keeps its place on pbt's clock (Tune saves no scheduler state):
            its last perturbation at the interval its epochs last crossed, and its last score in the ranking."""
            super().on_trial_add(tune_controller, trial)
            last = trial.last_result or {}
            if "epoch" in last and self._metric in last:
                state, epoch = self._trial_state[trial], int(last["epoch"])
                state.last_perturbation_time = restored_clock(epoch, self._perturbation_interval)
                state.last_train_time, state.last_result = epoch, last
                state.last_score = self._metric_op * last[self._metric]

        def _log_config_on_step(self, trial_state, new_state, trial, trial_to_clone, new_config):
            super()._log_config_on_step(trial_state, new_state, trial, trial_to_clone, new_config)
            epoch = int(trial_to_clone.last_result.get("epoch", 0))
            values = {k: new_config[k] for k in keys if k in new_config}
            self.lineage.append({"trial": trial.trial_id, "copied": trial_to_clone.trial_id, "epoch": epoch, **values})
            storage.write_text(cfg, self.path, json.dumps(self.lineage, indent=1))
            shown = ", ".join(f"{k}={v:.3g}" for k, v in values.items())
            console.say(
                f"  trial {trial.trial_id} copies trial {trial_to_clone.trial_id} at epoch {epoch} (pbt): {shown}"
            )

    return Population()


def restored_clock(epoch: int, interval: int) -> int:
    """The epoch of a trial's last pbt perturbation check, from its last reported epoch (a check falls due every
    `interval` epochs since the previous one, and results come every epoch)."""
    return epoch - epoch % interval


def bracket_milestones(cfg: KilnConfig) -> list[list[int]]:
    """Each bracket's rungs as whole epochs (a rung is reached at the first epoch at or past it), lowest first."""
    eta = cfg.tune.scheduler.reduction_factor
    return [
        sorted({math.ceil(m - 1e-9) for m in asha_rungs(grace_period(cfg) * eta**s, eta, cfg.train.epochs)})
        for s in range(cfg.tune.scheduler.brackets)
    ]


def grace_period(cfg: KilnConfig) -> int:
    """tune.scheduler.grace_period, clamped to train.epochs (a longer grace would judge no trial)."""
    return min(cfg.tune.scheduler.grace_period, cfg.train.epochs)


def promotion_scheduler(cfg: KilnConfig, search_name: str):
    """Tune's side of search.promotion: PAUSE at a rung, promoted paused trials chosen before new ones, records
    written to storage at every change and read back on --resume."""
    from ray.tune.experiment import Trial
    from ray.tune.schedulers import TrialScheduler

    class PromotionScheduler(TrialScheduler):
        _supports_buffered_results = False  # every epoch's report is judged as it comes

        def __init__(self):
            super().__init__()
            self.path = storage.search_file(cfg, search_name, RUNGS_FILE)
            self._rungs: promotion.Brackets | None = None
            self._saved: str | None = None  # the records as last written

        @property
        def rungs(self) -> promotion.Brackets:
            if self._rungs is None:  # read lazily: a restored search unpickles this object before it runs
                saved = storage.read_text(cfg, self.path)
                self._rungs = (
                    promotion.Brackets.from_json(saved)
                    if saved
                    else promotion.Brackets.build(
                        bracket_milestones(cfg), cfg.tune.scheduler.reduction_factor, cfg.tune.mode
                    )
                )
            return self._rungs

        def __getstate__(self):
            return {**self.__dict__, "_rungs": None, "_saved": None}

        def _save(self) -> None:
            """Write the records when a decision changed them (most reports fall between rungs)."""
            text = self.rungs.to_json()
            if text != self._saved:
                storage.write_text(cfg, self.path, text)
                self._saved = text

        def on_trial_add(self, tune_controller, trial) -> None:
            pass

        def on_trial_error(self, tune_controller, trial) -> None:
            pass

        def on_trial_complete(self, tune_controller, trial, result) -> None:
            pass

        def on_trial_remove(self, tune_controller, trial) -> None:
            pass

        def on_trial_result(self, tune_controller, trial, result) -> str:
            if "epoch" not in result or cfg.tune.metric not in result:
                return TrialScheduler.CONTINUE
            decision = self.rungs.on_result(
                trial.trial_id,
                int(result["epoch"]),
                float(result[cfg.tune.metric]),
                float(result.get("val_loss", math.nan)),
            )
            self._save()
            return TrialScheduler.PAUSE if decision == promotion.PAUSE else TrialScheduler.CONTINUE

        def choose_trial_to_run(self, tune_controller):
            trials = tune_controller.get_trials()
            paused = {t.trial_id: t for t in trials if t.status == Trial.PAUSED}
            promoted = self.rungs.next_promotion(set(paused))
            if promoted is None:
                pending = next((t for t in trials if t.status == Trial.PENDING), None)
                if pending is not None:
                    return pending
                if any(t.status == Trial.RUNNING for t in trials):
                    return None  # its next report may promote a paused trial
                promoted = self.rungs.next_promotion(set(paused), final=True)
                if promoted is None:
                    for trial in paused.values():  # nothing will rank them again: the search is over
                        tune_controller.stop_trial(trial)
                    return None
            self._save()
            return paused[promoted]

        def debug_string(self) -> str:
            return f"promotion-based ASHA over rungs {self.rungs.milestones} (one list a bracket)"

    return PromotionScheduler()
