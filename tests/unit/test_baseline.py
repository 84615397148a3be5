"""The gradient-boosted baseline takes the raw table as the network does: categories, missing cells, unseen values."""

import numpy as np

from pipelines import baseline, data
from pipelines.config import DataConfig


def test_trees_score_the_generated_customers_table_from_its_raw_columns():
    table = data.customers(rows=1200)
    checked = data.check_frame(table, DataConfig(label="churned"))
    assert "customer_id" not in checked.types  # the identifier is left out for the trees too
    train, test = checked.frame.iloc[:900], checked.frame.iloc[900:].copy()
    test.loc[test.index[:5], "region"] = "a region never seen"
    features = checked.features
    trees = baseline.fit_and_score(train[features], train["churned"].to_numpy(), test[features],
                                   test["churned"].to_numpy(), checked.types)
    majority = max(np.mean(test["churned"] == "yes"), np.mean(test["churned"] == "no"))
    assert trees.test_accuracy > majority + 0.05 and trees.fit_s > 0


def test_trees_regress_the_generated_houses_table_in_the_labels_units():
    table = data.houses(rows=1200)
    checked = data.check_frame(table, DataConfig(label="price"))
    assert checked.task == "regression"
    train, test = checked.frame.iloc[:900], checked.frame.iloc[900:]
    features = checked.features
    trees = baseline.fit_and_score(train[features], train["price"].to_numpy(), test[features],
                                   test["price"].to_numpy(), checked.types, task="regression")
    assert set(trees.metrics) == {"test_rmse", "test_mae", "test_r2"}
    spread = float(test["price"].std())
    assert trees.metrics["test_r2"] > 0.7 and trees.metrics["test_rmse"] < 0.6 * spread, trees.metrics
