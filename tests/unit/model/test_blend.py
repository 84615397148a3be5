"""The blend's one weight, fitted on val predictions: two identical models blend to the same score, and two models
that err on different rows blend to better than either."""

from __future__ import annotations

import numpy as np

from pipelines import task_metrics
from pipelines.model import blend


def test_two_identical_models_blend_to_the_same_score():
    rng = np.random.default_rng(0)
    probabilities = rng.dirichlet(np.ones(3), size=200)
    truth = rng.integers(0, 3, size=200)
    weight, score = blend.fit_weight(probabilities, probabilities, truth, "classification", "accuracy")
    assert score == task_metrics.classification(probabilities, truth)["accuracy"]
    assert weight == 0.5  # nothing to choose between them: the middle


def test_models_that_err_on_different_rows_blend_to_better_than_either():
    rng = np.random.default_rng(1)
    truth = rng.normal(size=500)
    network = truth + rng.normal(scale=1.0, size=500)  # independent errors of equal size
    baseline = truth + rng.normal(scale=1.0, size=500)
    weight, rmse = blend.fit_weight(network, baseline, truth, "regression", "rmse")
    alone = min(task_metrics.regression(p, truth)["rmse"] for p in (network, baseline))
    assert 0.3 <= weight <= 0.7 and rmse < 0.8 * alone


def test_a_far_better_network_takes_all_the_weight():
    rng = np.random.default_rng(2)
    truth = rng.integers(0, 2, size=300)
    network = np.eye(2)[truth] * 0.9 + 0.05
    baseline = rng.dirichlet(np.ones(2), size=300)
    weight, accuracy = blend.fit_weight(network, baseline, truth, "classification", "accuracy")
    assert accuracy == 1.0 and weight >= 0.5
    assert np.allclose(blend.blended(network, baseline, 1.0), network)
