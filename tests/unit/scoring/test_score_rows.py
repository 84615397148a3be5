"""Batch scoring's row rules, without Ray: what fails a row, what fails the job, and answers in input order."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from pipelines.errors import DataError
from pipelines.scoring import rows


@pytest.mark.parametrize(
    "cell, expected",
    [
        (3, 3.0),
        (2.5, 2.5),
        ("4.25", 4.25),
        (" 7 ", 7.0),
        (None, None),
        (math.nan, None),
        ("", None),
        (np.int64(2), 2.0),
    ],
)
def test_a_number_cell_parses_or_is_missing(cell, expected):
    assert rows.number_cell(cell) == expected


@pytest.mark.parametrize("cell", ["abc", True, "inf", math.inf])
def test_a_number_cell_that_is_not_a_finite_number_is_refused(cell):
    with pytest.raises(ValueError):
        rows.number_cell(cell)


def test_only_the_bad_rows_fail_and_each_says_which_column_and_value():
    frame = pd.DataFrame({"x": ["1.5", "oops", None, "2"], "town": ["a", "b", None, "zzz"]})
    valid, errors = rows.split_valid(frame, {"x": "number", "town": "category"})
    assert list(valid.index) == [0, 2, 3]
    assert valid["x"].tolist()[0] == 1.5 and math.isnan(valid["x"].tolist()[1])
    assert errors == [(1, "column 'x': 'oops' is not a number")]


def test_a_typed_number_column_is_taken_whole_and_only_an_infinite_cell_fails():
    frame = pd.DataFrame({"x": [1.0, np.inf, None, -np.inf], "n": pd.array([1, None, 3, 4], dtype="Int64")})
    valid, errors = rows.split_valid(frame, {"x": "number", "n": "number"})
    assert list(valid.index) == [0, 2] and valid["n"].isna().tolist() == [False, False]
    assert errors == [(1, "column 'x': 'inf' is not a number"), (3, "column 'x': '-inf' is not a number")]
    _, flags = rows.split_valid(pd.DataFrame({"x": [True, False]}), {"x": "number"})
    assert [i for i, _ in flags] == [0, 1]  # a column of booleans is not numbers


def test_a_missing_feature_or_kept_column_fails_the_job_naming_it():
    with pytest.raises(DataError, match="--input t.csv: no column 'b', a feature of this model"):
        rows.check_columns(["a", "id"], ["a", "b"], [], "--input t.csv")
    with pytest.raises(DataError, match="score.keep: 'name' is not a column of --input t.csv"):
        rows.check_columns(["a", "b"], ["a", "b"], ["name"], "--input t.csv")
    rows.check_columns(["a", "b", "id"], ["a", "b"], ["id"], "--input t.csv")


class Halves:
    """A stand-in version: class 'big' when x > 0. Only the model's own interface is used."""

    features = ["x"]

    class preprocessing:  # noqa: N801
        types = {"x": "number"}
        encoders = []
        regression = False
        labels = ["small", "big"]

    def outputs(self, frame):
        big = (frame["x"].fillna(0).to_numpy() > 0).astype(float)
        return np.stack([1 - big, big], axis=1)

    def decode(self, outputs):
        return [self.preprocessing.labels[i] for i in outputs.argmax(axis=1)]


def test_every_row_comes_back_once_in_order_with_its_answer_or_its_reason():
    frame = pd.DataFrame({"id": ["a", "b", "c"], "x": [1.0, "bad", -2.0]})
    out = rows.score_frame(Halves(), frame, keep=["id"], probabilities=True)
    assert out["id"].tolist() == ["a", "b", "c"]
    assert out.loc[[0, 2], "prediction"].tolist() == ["big", "small"]
    assert out["error"].tolist() == ["", "column 'x': 'bad' is not a number", ""]
    assert out.loc[0, "probability_big"] == 1.0 and out.loc[2, "probability_small"] == 1.0


def test_the_actor_pool_always_leaves_a_cpu_for_ray_datas_read_tasks():
    """Counted from the CPUs free when the job starts (a shared cluster's endpoint holds some)."""
    from pipelines.scoring.job import pool_shape

    assert pool_shape(1.0, 1.0) == (0.0, 1)  # a 1-CPU runtime: the actor shares the core, the reads start
    assert pool_shape(2.0, 1.0) == (1.0, 1)
    assert pool_shape(8.0, 1.0) == (1.0, 7)
    assert pool_shape(8.0, 2.0) == (2.0, 3)
    assert pool_shape(1.5, 1.0) == (0.5, 1)
    assert pool_shape(2.0, None) == (0.5, 2)  # unset, one machine: an actor per core, one CPU still free
    assert pool_shape(8.0, None) == (0.875, 8)
    assert pool_shape(1.0, None) == (0.0, 1)
    assert pool_shape(16.0, None, nodes=2) == (1.0, 15)  # a cluster: the free CPU must be whole on one node
    assert pool_shape(2.75, None, nodes=2) == (1.0, 1)  # 3 CPUs, an endpoint's replica holding 0.25: one actor
    assert pool_shape(0.75, None, nodes=2) == (0.0, 1)  # less than a CPU free: one actor sharing it, never none


def test_progress_says_the_rate_and_with_a_known_total_the_time_left():
    from pipelines.scoring.job import progress_line

    assert progress_line(5000, 20000, 2.0) == "  5,000 of 20,000 rows scored (25%), 2,500 rows/s, about 6 s left"
    assert progress_line(3000, None, 1.5) == "  3,000 rows scored, 2,000 rows/s"  # CSV: no count before reading
    assert progress_line(0, 100, 5.0).endswith("0 rows/s, time left unknown")
    # counted from the first batch: 6 s of actor start before it do not stretch the time left
    assert progress_line(14000, 20000, 8.0, first=(4000, 6.0)).endswith("5,000 rows/s, about 1 s left")


def test_a_scored_batch_is_numbered_from_where_the_last_ended_and_split_by_its_errors():
    import pyarrow as pa

    batch = pa.table({"id": ["a", "b", "c"], "prediction": ["x", None, "y"], "error": ["", "column 'x': bad", ""]})
    good, bad = rows.numbered(batch, 100)
    assert good.column_names == ["row", "id", "prediction"]
    assert good.to_pydict() == {"row": [100, 102], "id": ["a", "c"], "prediction": ["x", "y"]}
    assert bad.to_pydict() == {"row": [101], "error": ["column 'x': bad"]}
    assert good.num_rows + bad.num_rows == batch.num_rows
