"""The task: picked from the label by the documented rule, refused when the label cannot serve it, and the
config's metric, mode and loss decided with it (errors name the key)."""

import numpy as np
import pandas as pd
import pytest

from pipelines.config import DataConfig, load_config
from pipelines.data import task
from pipelines.errors import ConfigError, DataError


@pytest.mark.parametrize(
    "labels, expected",
    [
        (["yes", "no", "yes"], "classification"),
        ([True, False, True], "classification"),
        (list(range(10)) * 3, "classification"),  # digits
        ([1, 2, 3, 4, 5] * 6, "classification"),  # a 1-5 grade
        (np.linspace(0, 1, 30), "regression"),  # fractions
        (list(range(100_000, 100_000 + 229 * 1000, 1000)), "regression"),  # a price in whole units, 229 values
        (pd.Series([3.5, None, 4.25, 7.0], dtype=object), "regression"),  # numbers with gaps, as object
    ],
)
def test_the_rule_for_auto(labels, expected):
    assert task.infer(pd.Series(labels))[0] == expected


def test_exactly_twenty_whole_numbers_are_still_classes_and_twenty_one_a_regression():
    assert task.infer(pd.Series(range(20)))[0] == "classification"
    assert task.infer(pd.Series(range(21)))[0] == "regression"


def test_a_regression_on_a_string_label_is_refused_naming_the_value():
    with pytest.raises(DataError, match="data.task: regression, but label 'y' holds 'high', not a number"):
        task.decide(pd.Series(["high", "low"]), DataConfig(label="y", task="regression"))


def test_a_constant_target_is_refused():
    with pytest.raises(DataError, match="1 distinct value among the labelled rows"):
        task.decide(pd.Series([2.5, 2.5, 2.5]), DataConfig(task="regression"))


def test_resolving_defaults_the_metric_and_mode_to_the_tasks():
    cfg = load_config(None)
    regression, note = task.resolve(cfg, pd.Series(np.linspace(0, 1, 50)))
    assert (regression.task, regression.tune.metric, regression.tune.mode) == ("regression", "val_rmse", "min")
    assert note.startswith("note: task regression (data.task: auto")
    classification, _ = task.resolve(cfg, pd.Series(["a", "b"] * 10))
    assert (classification.tune.metric, classification.tune.mode) == ("val_accuracy", "max")
    chosen, _ = task.resolve(load_config(None, ["tune.metric=val_r2"]), pd.Series(np.linspace(0, 1, 50)))
    assert chosen.tune.mode == "max"  # r2 is a score


def test_a_metric_of_the_other_task_is_refused_once_the_task_is_known():
    with pytest.raises(
        ConfigError,
        match="tune.metric: val_accuracy is a classification metric, but the task is regression; use one of .*val_rmse",
    ):
        task.resolve(load_config(None, ["tune.metric=val_accuracy"]), pd.Series(np.linspace(0, 1, 50)))


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["data.task=regression", "tune.metric=val_auc"], "tune.metric: val_auc is a classification metric"),
        (["data.task=classification", "tune.metric=val_rmse"], "tune.metric: val_rmse is a regression metric"),
        (["data.task=classification", "train.loss=mse"], "train.loss: mse is a regression loss"),
        (["data.task=regression", "train.loss=cross_entropy"], "train.loss: cross_entropy is a classification loss"),
        (["data.task=ranking"], "data.task: Input should be 'auto', 'classification' or 'regression'"),
        (["tune.metric=val_precision"], "tune.metric: must be one of"),
    ],
)
def test_config_errors_name_the_key(overrides, message):
    with pytest.raises(ConfigError, match=message):
        load_config(None, overrides)
