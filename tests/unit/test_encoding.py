"""The fitted preprocessing: statistics from train only, missing and unseen values never refused, JSON round trip."""

import json

import numpy as np
import pandas as pd
import pytest

from pipelines.data import preprocessing
from pipelines.data.preprocessing import Encoder, Preprocessing


def table(n=60):
    rng = np.random.default_rng(0)
    return pd.DataFrame(
        {
            "f1": rng.normal(size=n),
            "f2": rng.normal(5, 2, size=n),
            "town": (["north", "south", "east"] * n)[:n],
            "smoker": (["yes", "no"] * n)[:n],
            "label": [("a", "b", "c")[i % 3] for i in range(n)],
        }
    )


TYPES = {"f1": "number", "f2": "number", "town": "category", "smoker": "binary"}


def test_number_statistics_come_from_train_rows_only():
    df = table()
    train = df.iloc[:30]
    prep = preprocessing.fit(train, {"f1": "number", "f2": "number"}, df["label"], max_categories=10)
    assert [e.mean for e in prep.encoders] == pytest.approx(train[["f1", "f2"]].mean().tolist())
    standardised = prep.transform(train[["f1", "f2"]])["x"]
    assert standardised.mean(axis=0) == pytest.approx([0, 0], abs=1e-6)
    assert standardised.std(axis=0) == pytest.approx([1, 1], abs=1e-5)


def test_constant_column_is_not_divided_by_zero():
    df = table().assign(f2=1.0)
    prep = preprocessing.fit(df, {"f1": "number", "f2": "number"}, df["label"], max_categories=10)
    assert np.isfinite(prep.transform(df[["f1", "f2"]])["x"]).all()


def test_missing_numbers_take_the_train_median_and_an_indicator():
    train = pd.DataFrame({"x": [1.0, 2.0, np.nan, 10.0]})
    encoder = preprocessing.fit_encoder("x", "number", train["x"], max_categories=5)
    assert encoder.median == 2.0 and encoder.indicator and encoder.names == ["x", "x=missing"]
    out = encoder.encode(pd.Series([np.nan, None, 2.0]))
    assert out[:, 1].tolist() == [1, 1, 0]
    assert out[0, 0] == out[1, 0] == out[2, 0]  # imputed exactly as the median encodes


def test_categories_keep_the_most_frequent_train_values_and_share_other():
    train = pd.Series(["a"] * 5 + ["b"] * 3 + ["c"] * 2 + ["d"])
    encoder = preprocessing.fit_encoder("town", "category", train, max_categories=2)
    assert encoder.levels == ["a", "b"] and encoder.width == 4
    out = encoder.encode(pd.Series(["a", "c", "never seen", None, 3]))
    assert out.argmax(axis=1).tolist() == [0, 3, 3, 2, 3]  # a, other, other, missing, other
    assert (out.sum(axis=1) == 1).all()


def test_category_levels_ignore_how_a_number_was_written():
    encoder = preprocessing.fit_encoder("code", "category", pd.Series([3, 3, 7]), max_categories=5)
    assert encoder.encode(pd.Series([3.0, "3", 7])).argmax(axis=1).tolist() == [0, 0, 1]


def test_binary_maps_two_values_and_flags_the_rest():
    encoder = preprocessing.fit_encoder("smoker", "binary", pd.Series(["yes", "no", "no"]), max_categories=5)
    assert encoder.levels == ["no", "yes"]
    assert encoder.encode(pd.Series(["yes", "no", None, "maybe"])).tolist() == [[1, 0], [0, 0], [0, 1], [0, 1]]


def test_mixed_rows_round_trip_through_json_and_encode_alike():
    df = table()
    prep = preprocessing.fit(df, TYPES, df["label"], max_categories=10)
    restored = Preprocessing.from_dict(json.loads(json.dumps(prep.to_dict())))
    rows = df[list(TYPES)].head(5)
    assert restored.width == prep.width == 1 + 1 + 5 + 2
    assert np.array_equal(restored.transform(rows)["x"], prep.transform(rows)["x"])
    assert restored.transform(rows).keys() == {"x"}  # numbers, binary and one-hot categories: all dense float32
    assert restored.encode(pd.Series(["c", "a"])).tolist() == [2, 0]


def test_a_checkpoint_from_before_column_types_still_loads():
    old = {"features": ["a", "b"], "mean": [1.0, 2.0], "std": [2.0, 4.0], "labels": [0, 1]}
    prep = Preprocessing.from_dict(old)
    assert prep.types == {"a": "number", "b": "number"}
    assert prep.transform(np.array([[3.0, 6.0]]))["x"].tolist() == [[1.0, 1.0]]


def test_integer_labels_stay_integers():
    prep = preprocessing.fit(table(), {"f1": "number"}, pd.Series(np.array([3, 1, 2, 1])), max_categories=5)
    assert prep.labels == [1, 2, 3] and all(type(v) is int for v in prep.labels)


def test_an_encoder_names_its_columns():
    assert Encoder("t", "category", levels=["x"]).names == ["t=x", "t=missing", "t=other"]


def test_a_regression_target_is_standardised_on_train_and_decoded_back_after_json():
    train = pd.DataFrame({"x": [1.0, 2.0, 3.0, 4.0], "price": [100.0, 200.0, 300.0, 400.0]})
    prep = preprocessing.fit(
        train, {"x": "number"}, train["price"], max_categories=10, task="regression", train_labels=train["price"]
    )
    targets = prep.encode(train["price"])
    assert targets.dtype == np.float32 and abs(targets.mean()) < 1e-6 and abs(targets.std() - 1) < 1e-6
    again = preprocessing.Preprocessing.from_dict(json.loads(json.dumps(prep.to_dict())))
    assert again.regression and again.output_dim == 1 and again.labels == []
    assert np.allclose(again.decode(targets), train["price"])


def test_quantile_numbers_become_normal_scores_of_their_train_rank_and_travel_as_json():
    import json

    from scipy.stats import norm

    rng = np.random.default_rng(0)
    skewed = pd.Series(np.exp(rng.normal(size=2000)))  # log-normal: standardising leaves a long tail
    encoder = preprocessing.fit_encoder("x", "number", skewed, max_categories=5, numbers="quantile")
    z = encoder.encode(skewed)[:, 0]
    assert abs(z.mean()) < 0.05 and abs(z.std() - 1) < 0.05 and z.max() <= 3.0
    assert encoder.encode(pd.Series([float(np.median(skewed))]))[0, 0] == pytest.approx(0.0, abs=0.05)
    assert encoder.encode(pd.Series([1e9]))[0, 0] == pytest.approx(norm.ppf(0.99865), abs=1e-3), "clipped"
    again = preprocessing.Encoder(**json.loads(json.dumps(encoder.to_dict())))
    np.testing.assert_array_equal(again.encode(skewed), encoder.encode(skewed))
    many_ties = pd.Series([0.0] * 900 + [1.0, 2.0, 3.0] * 34)
    tied = preprocessing.fit_encoder("t", "number", many_ties, max_categories=5, numbers="quantile")
    assert tied.encode(pd.Series([0.0]))[0, 0] == pytest.approx(norm.ppf(0.45), abs=0.05), "ties rank mid-way"
    two = preprocessing.fit_encoder("b", "number", pd.Series([0.0, 1.0] * 50), max_categories=5, numbers="quantile")
    assert two.quantiles == [], "two values are standardised"


def test_ple_numbers_add_a_piecewise_linear_column_per_train_quantile_bin_and_travel_as_json():
    import json

    rng = np.random.default_rng(0)
    values = pd.Series(rng.exponential(size=1000))
    values[3] = np.nan
    encoder = preprocessing.fit_encoder("x", "number", values, max_categories=5, numbers="ple")
    bins = len(encoder.bins) - 1
    assert bins == preprocessing.PLE_BINS and encoder.width == 1 + bins + 1, "value, one column per bin, missing"
    encoded = encoder.encode(pd.Series([encoder.bins[0] - 1.0, encoder.bins[5], 1e9, np.nan]))
    assert encoded.shape == (4, encoder.width) and len(encoder.names) == encoder.width
    pieces = encoded[:, 1:-1]
    assert (pieces[0] == 0).all(), "below the first edge: every bin empty"
    assert (pieces[1, :5] == 1).all() and (pieces[1, 5:] == 0).all(), "at the 5th bin's top: five bins full"
    assert (pieces[2] == 1).all(), "above the last edge: every bin full"
    assert encoded[3, -1] == 1 and encoded[3, 0] == pytest.approx((encoder.median - encoder.mean) / encoder.std)
    middle = (encoder.bins[2] + encoder.bins[3]) / 2
    assert encoder.encode(pd.Series([middle]))[0, 1 + 2] == pytest.approx(0.5), "halfway through bin 3"
    again = preprocessing.Encoder(**json.loads(json.dumps(encoder.to_dict())))
    np.testing.assert_array_equal(again.encode(values), encoder.encode(values))
    two = preprocessing.fit_encoder("b", "number", pd.Series([0.0, 1.0] * 50), max_categories=5, numbers="ple")
    assert two.bins == [] and two.width == 1, "two values are standardised only"


def test_auto_numbers_are_ple_on_large_train_splits_only():
    rng = np.random.default_rng(1)
    for rows, has_bins in ((preprocessing.PLE_FROM_ROWS - 1, False), (preprocessing.PLE_FROM_ROWS, True)):
        train = pd.DataFrame({"x": rng.normal(size=rows)})
        prep = preprocessing.fit(
            train, {"x": "number"}, pd.Series([0, 1] * (rows // 2 + 1)), max_categories=5, numbers="auto"
        )
        assert bool(prep.encoders[0].bins) == has_bins, rows


def test_a_batch_of_categories_is_coded_as_each_value_alone_would_be():
    """Each distinct value's level is found once per batch; every cell still gets its own value's level (3, 3.0
    and "3" one level; None, NaN and pd.NA missing), and an unhashable cell is taken on its own."""
    from pipelines.data.preprocessing import coded_levels, level

    cells = ["a", 3, 3.0, "3", None, np.nan, pd.NA, "zz", True, "a", ""]
    for values in (pd.Series(cells, dtype=object), pd.Series(cells * 5, dtype=object)):  # a request's rows; a batch's
        codes, names = coded_levels(values)
        assert [names[c] for c in codes] == [level(v) for v in values], len(values)
    arrow = pd.Series(["b", None, "b", "c"], dtype="string[pyarrow]")  # what a parquet batch gives
    codes, names = coded_levels(arrow)
    assert [names[c] for c in codes] == ["b", None, "b", "c"]
    codes, names = coded_levels([["x"], "a"])
    assert [names[c] for c in codes] == [level(["x"]), "a"]


def test_number_cells_read_alike_in_a_request_and_in_a_batch():
    """A few rows (a request) skip pandas, a batch goes through pd.to_numeric: a cell reads the same either way
    (None and NaN missing; a string or a bool is read by pandas' rules in both)."""
    from pipelines.data.preprocessing import FEW_ROWS, as_numbers

    for cells in ([1, 2.5, None, float("nan"), np.float64(3)], [1, "2.5", None, "x"], [True, 2.0], [np.int64(4)]):
        expected = pd.to_numeric(pd.Series(cells * (FEW_ROWS + 1), dtype=object), errors="coerce").to_numpy(float)
        few = as_numbers(pd.Series(cells, dtype=object))
        np.testing.assert_array_equal(few, expected[: len(cells)])
        np.testing.assert_array_equal(as_numbers(pd.Series(cells * (FEW_ROWS + 1), dtype=object)), expected)
