"""How each new trial's config is picked (tune.search): Ray Tune's random BasicVariantGenerator, or Optuna's TPE
through Ray Tune's OptunaSearch, which learns from every epoch a trial reports and counts a trial the scheduler
stopped as pruned. Imported only when a search is built (Optuna and Tune's searchers take a while to import)."""

from __future__ import annotations

from typing import Any

from ray.tune.search.optuna import OptunaSearch

from pipelines.config import KilnConfig
from pipelines.search.space import parse_search_space


def startup_trials(num_samples: int) -> int:
    """Random trials before TPE models the rest: Optuna's default 10 would leave a 16-trial search random; a quarter
    of the trials, 3 to 10."""
    return max(3, min(10, num_samples // 4))


def search_algorithm(cfg: KilnConfig, cap: int | None):
    """tune.search's searcher, at most `cap` trials at once (None: the trials' resources decide). An empty search
    space (one config, `tune.search_space: {}`) has nothing for TPE to learn: its trials are drawn as random's."""
    if cfg.tune.search == "random" or not parse_search_space(cfg.tune.search_space):
        from ray.tune.search.basic_variant import BasicVariantGenerator

        return BasicVariantGenerator(random_state=cfg.tune.seed, max_concurrent=cap or 0)
    import optuna
    from optuna.samplers import TPESampler
    from ray.tune.search import ConcurrencyLimiter

    optuna.logging.set_verbosity(optuna.logging.WARNING)  # a line per study and per trial otherwise
    startup = startup_trials(cfg.tune.num_samples)
    tpe = TPESampler(seed=cfg.tune.seed, n_startup_trials=startup)
    searcher = PruningOptunaSearch(sampler=tpe, epochs=cfg.train.epochs, startup=startup)
    return ConcurrencyLimiter(searcher, max_concurrent=cap) if cap else searcher


class PruningOptunaSearch(OptunaSearch):
    """OptunaSearch, but a trial that ended before train.epochs without an error (the scheduler stopped it) is told
    to Optuna as pruned at its last reported epoch, which TPE ranks by that epoch's value, instead of as finished
    with a value a full run would have beaten."""

    def __init__(self, *args: Any, epochs: int, startup: int = 0, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.epochs, self.startup = epochs, startup

    def suggest(self, trial_id: str) -> dict | None:
        """The config, and who proposed it (progress.PROPOSED_BY): TPE samples at random until `startup` trials
        have finished or been pruned (Optuna's count at the time of asking), and from its model after that."""
        from optuna.trial import TrialState

        from pipelines.search import progress

        study = getattr(self, "_ot_study", None)
        told = len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED))) if study else 0
        config = super().suggest(trial_id)
        if isinstance(config, dict):
            progress.PROPOSED_BY.setdefault(trial_id, "random" if told < self.startup else "tpe")
        return config

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        stopped_early = bool(result) and not error and result.get("training_iteration", 0) < self.epochs
        super().on_trial_complete(trial_id, None if stopped_early else result, error)
