"""Every metric Kiln reports, held to scikit-learn's own on the same predictions."""

import numpy as np
import pytest
from sklearn import metrics as sk

from pipelines import task_metrics


def probabilities(rows: int, classes: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    truth = rng.integers(0, classes, rows)
    logits = rng.normal(size=(rows, classes)) + 1.5 * np.eye(classes)[truth]
    probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    return probs, truth


@pytest.mark.parametrize("classes", [2, 3, 7])
def test_classification_metrics_match_scikit_learn(classes):
    probs, truth = probabilities(400, classes, seed=classes)
    got = task_metrics.classification(probs, truth)
    predicted = probs.argmax(axis=1)
    assert got["accuracy"] == pytest.approx(sk.accuracy_score(truth, predicted))
    assert got["f1_macro"] == pytest.approx(sk.f1_score(truth, predicted, average="macro"))
    assert got["log_loss"] == pytest.approx(sk.log_loss(truth, probs, labels=list(range(classes))))
    expected_auc = (
        sk.roc_auc_score(truth, probs[:, 1])
        if classes == 2
        else sk.roc_auc_score(truth, probs, multi_class="ovr", average="macro")
    )
    assert got["auc"] == pytest.approx(expected_auc)


def test_auc_counts_tied_scores_half_as_scikit_learn_does():
    scores = np.array([0.1, 0.5, 0.5, 0.5, 0.9, 0.2])
    positive = np.array([0, 1, 0, 1, 1, 0])
    assert task_metrics.binary_auc(scores, positive == 1) == pytest.approx(sk.roc_auc_score(positive, scores))


def test_f1_macro_counts_a_class_never_predicted_as_zero():
    truth, predicted = np.array([0, 0, 1, 2]), np.array([0, 0, 1, 1])
    probs = np.eye(3)[predicted] * 0.9 + 0.1 / 3
    assert task_metrics.classification(probs, truth)["f1_macro"] == pytest.approx(
        sk.f1_score(truth, predicted, average="macro", zero_division=0)
    )


def test_regression_metrics_match_scikit_learn():
    rng = np.random.default_rng(1)
    truth = rng.normal(200, 50, 300)
    predicted = truth + rng.normal(0, 20, 300)
    got = task_metrics.regression(predicted, truth)
    assert got["rmse"] == pytest.approx(sk.mean_squared_error(truth, predicted) ** 0.5)
    assert got["mae"] == pytest.approx(sk.mean_absolute_error(truth, predicted))
    assert got["r2"] == pytest.approx(sk.r2_score(truth, predicted))


def test_each_metric_knows_its_task_and_direction():
    assert task_metrics.mode_of("val_accuracy") == "max" and task_metrics.mode_of("test_r2") == "max"
    assert task_metrics.mode_of("val_rmse") == "min" and task_metrics.mode_of("val_log_loss") == "min"
    assert task_metrics.mode_of("val_loss") == "min"
    assert task_metrics.task_of("val_auc") == "classification" and task_metrics.task_of("val_mae") == "regression"
    assert task_metrics.task_of("val_loss") is None
    assert "val_r2" in task_metrics.reported("regression") and "val_accuracy" not in task_metrics.reported("regression")
