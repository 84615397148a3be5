"""The blend's one weight, chosen on val predictions by bagged selection: two identical models blend to the same
score, two models that err on different rows blend to better than either, and one outlying val row does not take
the weight to one end."""

from __future__ import annotations

import numpy as np

from pipelines import task_metrics
from pipelines.model import blend


def test_two_identical_models_blend_to_the_same_score():
    rng = np.random.default_rng(0)
    probabilities = rng.dirichlet(np.ones(3), size=200)
    truth = rng.integers(0, 3, size=200)
    weight = blend.fit_weight(probabilities, probabilities, truth, "classification", "accuracy")
    blended = blend.blended(probabilities, probabilities, weight)
    assert (
        task_metrics.classification(blended, truth)["accuracy"]
        == task_metrics.classification(probabilities, truth)["accuracy"]
    )
    assert weight == 1.0  # nothing to choose between them: the network alone, at half the serving cost


def test_models_that_err_on_different_rows_blend_to_better_than_either():
    rng = np.random.default_rng(1)
    truth = rng.normal(size=500)
    network = truth + rng.normal(scale=1.0, size=500)  # independent errors of equal size
    baseline = truth + rng.normal(scale=1.0, size=500)
    weight = blend.fit_weight(network, baseline, truth, "regression", "rmse")
    rmse = task_metrics.regression(blend.blended(network, baseline, weight), truth)["rmse"]
    alone = min(task_metrics.regression(p, truth)["rmse"] for p in (network, baseline))
    assert 0.3 <= weight <= 0.7 and rmse < 0.8 * alone


def test_a_far_better_network_takes_all_the_weight():
    rng = np.random.default_rng(2)
    truth = rng.integers(0, 2, size=300)
    network = np.eye(2)[truth] * 0.9 + 0.05
    baseline = rng.dirichlet(np.ones(2), size=300)
    weight = blend.fit_weight(network, baseline, truth, "classification", "accuracy")
    accuracy = task_metrics.classification(blend.blended(network, baseline, weight), truth)["accuracy"]
    assert accuracy == 1.0 and weight >= 0.5
    assert np.allclose(blend.blended(network, baseline, 1.0), network)


def test_one_outlying_val_row_does_not_hand_all_the_weight_to_the_other_model():
    """The network is the better model on all val rows but one, where it is off by a mile (a house ten times the
    size of any in train). Its squared error there alone makes the baseline best on the whole split; the
    resamples without that row prefer an even blend, so the weight stays between the two."""
    rng = np.random.default_rng(4)
    truth = rng.normal(size=300)
    network, baseline = truth + rng.normal(scale=0.5, size=300), truth + rng.normal(scale=0.6, size=300)
    network[0] += 80.0
    point = min(blend.GRID, key=lambda w: task_metrics.regression(blend.blended(network, baseline, w), truth)["rmse"])
    weight = blend.fit_weight(network, baseline, truth, "regression", "rmse")
    assert point == 0.0
    assert 0.1 <= weight <= 0.5


def test_the_weight_is_the_same_on_every_run_and_f1_is_bagged_too():
    rng = np.random.default_rng(5)
    truth = rng.integers(0, 3, size=150)
    network, baseline = rng.dirichlet(np.ones(3), size=150), rng.dirichlet(np.ones(3), size=150)
    network[np.arange(150), truth] += 0.5
    baseline[np.arange(150), truth] += 0.4
    first = blend.fit_weight(network, baseline, truth, "classification", "f1_macro")
    assert first == blend.fit_weight(network, baseline, truth, "classification", "f1_macro")
    assert 0.0 <= first <= 1.0 and first in np.round(blend.GRID, 4)
    auc = blend.fit_weight(network, baseline, truth, "classification", "auc")
    assert auc == blend.fit_weight(network, baseline, truth, "classification", "auc") and auc in np.round(blend.GRID, 4)
