"""The gradient-boosted baseline takes the raw table as the network does: categories, missing cells, unseen values."""

import numpy as np

from pipelines.config import DataConfig
from pipelines.data import builtin, sources
from pipelines.model import baseline


def test_trees_score_the_generated_customers_table_from_its_raw_columns():
    table = builtin.customers(rows=1200)
    checked = sources.check_frame(table, DataConfig(label="churned"))
    assert "customer_id" not in checked.types  # the identifier is left out for the trees too
    train, test = checked.frame.iloc[:900], checked.frame.iloc[900:].copy()
    test.loc[test.index[:5], "region"] = "a region never seen"
    features = checked.features
    trees = baseline.fit_and_score(
        train[features], train["churned"].to_numpy(), test[features], test["churned"].to_numpy(), checked.types
    )
    majority = max(np.mean(test["churned"] == "yes"), np.mean(test["churned"] == "no"))
    assert trees.test_accuracy > majority + 0.05 and trees.fit_s > 0


def test_trees_regress_the_generated_houses_table_in_the_labels_units():
    table = builtin.houses(rows=1200)
    checked = sources.check_frame(table, DataConfig(label="price"))
    assert checked.task == "regression"
    train, test = checked.frame.iloc[:900], checked.frame.iloc[900:]
    features = checked.features
    trees = baseline.fit_and_score(
        train[features],
        train["price"].to_numpy(),
        test[features],
        test["price"].to_numpy(),
        checked.types,
        task="regression",
    )
    assert set(trees.metrics) == {"test_rmse", "test_mae", "test_r2"}
    spread = float(test["price"].std())
    assert trees.metrics["test_r2"] > 0.7 and trees.metrics["test_rmse"] < 0.6 * spread, trees.metrics


def test_a_loss_to_the_baseline_is_said_with_its_size_and_what_to_try():
    trees = baseline.Baseline({"test_accuracy": 0.98, "test_rmse": 2.0}, 1.0)
    said = baseline.verdict("test_accuracy", 0.947, trees)
    assert "0.9800" in said and "0.9470" in said and "by 0.0330" in said and "try" in said
    assert baseline.verdict("test_accuracy", 0.99, trees) is None
    assert "1.250x the error" in baseline.verdict("test_rmse", 2.5, trees)
    assert baseline.verdict("test_rmse", 1.5, trees) is None
    assert baseline.verdict("test_accuracy", 0.5, None) is None
