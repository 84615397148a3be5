"""tune.search: tpe. Optuna's TPE through Ray Tune's OptunaSearch, driven here as Tune drives it (suggest, a
result per epoch, complete), without a runtime: every domain maps onto Optuna's distributions, nested choices
come back as the values written, and a trial the scheduler stopped counts as pruned, not finished."""

from __future__ import annotations

import math

import optuna
import pytest
from optuna.trial import TrialState

from pipelines.config import KilnConfig
from pipelines.search import sampler, space
from pipelines.search.space import to_tune_domain

SPACE = {
    "train.lr": {"loguniform": [1e-4, 1e-2]},
    "model.dropout": {"uniform": [0.0, 0.5]},
    "train.batch_size": {"choice": [32, 64]},
    "model.hidden": {"choice": [[64], [128, 64]]},
    "train.epochs": {"randint": [2, 5]},
}


def tpe_search(**tune):
    cfg = KilnConfig.model_validate(
        {"train": {"epochs": 4}, "tune": {"search": "tpe", "num_samples": 12, "search_space": SPACE, **tune}}
    )
    domains = space.parse_search_space(cfg.tune.search_space)
    param_space = {key: to_tune_domain(d, plain_choices=True) for key, d in domains.items()}
    searcher = sampler.search_algorithm(cfg, cap=None)
    assert searcher.set_search_properties("val_accuracy", "max", param_space)
    return cfg, searcher


def test_every_domain_maps_and_a_nested_choice_comes_back_as_written():
    cfg, searcher = tpe_search()
    sample = searcher.suggest("t0")
    assert 1e-4 <= sample["train.lr"] <= 1e-2 and 0 <= sample["model.dropout"] <= 0.5
    assert sample["train.batch_size"] in (32, 64) and 2 <= sample["train.epochs"] <= 4
    assert sample["model.hidden"] in ("[64]", "[128,64]")  # Optuna's categorical holds plain values only
    trial = cfg.with_sample(sample)
    assert trial.model.hidden in ([64], [128, 64]) and trial.train.lr == sample["train.lr"]


def test_a_trial_the_scheduler_stopped_is_pruned_and_a_finished_one_complete():
    _, searcher = tpe_search()
    for trial_id, epochs in (("stopped", 2), ("finished", 4)):
        searcher.suggest(trial_id)
        for epoch in range(1, epochs + 1):
            searcher.on_trial_result(trial_id, {"val_accuracy": 0.1 * epoch, "training_iteration": epoch})
        searcher.on_trial_complete(trial_id, {"val_accuracy": 0.1 * epochs, "training_iteration": epochs})
    searcher.suggest("failed")
    searcher.on_trial_complete("failed", None, error=True)
    states = [t.state for t in searcher._ot_study.trials]
    assert states == [TrialState.PRUNED, TrialState.COMPLETE, TrialState.FAIL]
    pruned = searcher._ot_study.trials[0]
    assert pruned.intermediate_values == {1: pytest.approx(0.1), 2: pytest.approx(0.2)}  # what TPE ranks it by


def test_tpe_draws_near_the_better_trials_after_its_random_start():
    """After the random start, most new learning rates fall near the trials that scored well."""
    cfg, searcher = tpe_search(num_samples=40, search_space={"train.lr": {"loguniform": [1e-4, 1e-1]}})
    lrs = []
    for i in range(40):
        trial_id = f"t{i}"
        lr = searcher.suggest(trial_id)["train.lr"]
        lrs.append(lr)
        score = -abs(math.log10(lr) + 3)  # best at 1e-3
        searcher.on_trial_result(trial_id, {"val_accuracy": score, "training_iteration": 4})
        searcher.on_trial_complete(trial_id, {"val_accuracy": score, "training_iteration": 4})
    start = sampler.startup_trials(40)
    later = lrs[start + 10 :]
    near = sum(3e-4 <= lr <= 3e-3 for lr in later)
    assert near >= 0.6 * len(later), lrs
    assert isinstance(searcher._ot_study.sampler, optuna.samplers.TPESampler)


def test_random_stays_the_default():
    from ray.tune.search.basic_variant import BasicVariantGenerator

    assert isinstance(sampler.search_algorithm(KilnConfig(), cap=2), BasicVariantGenerator)


def test_each_trial_says_whether_tpe_or_its_random_start_proposed_it():
    """Random until startup_trials have finished or been pruned (counted when a trial is asked for, so trials asked
    for side by side at the start are all random), then tpe: what the trial lines print."""
    from pipelines.search import progress

    _, searcher = tpe_search()
    assert sampler.startup_trials(12) == 3

    def finish(trial_id: str, epochs: int) -> None:
        searcher.on_trial_result(trial_id, {"val_accuracy": 0.5, "training_iteration": epochs})
        searcher.on_trial_complete(trial_id, {"val_accuracy": 0.5, "training_iteration": epochs})

    for trial_id in ("p0", "p1", "p2"):
        searcher.suggest(trial_id)  # three at once: nothing has finished
    finish("p0", 4)
    finish("p1", 2)  # stopped by the scheduler: pruned, and counted
    searcher.suggest("p3")
    finish("p2", 4)
    searcher.suggest("p4")
    labels = [progress.PROPOSED_BY[t] for t in ("p0", "p1", "p2", "p3", "p4")]
    assert labels == ["random", "random", "random", "random", "tpe"]
