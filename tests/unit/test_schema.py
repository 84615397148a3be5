"""The column-type rule (pipelines/data/schema.py), one case each, and the schema table validate prints."""

import numpy as np
import pandas as pd
import pytest

from pipelines.config import DataConfig
from pipelines.data import schema


@pytest.mark.parametrize(
    "values, kind, use",
    [
        ([1.5, 2.0, 3.25, 4.0], "number", "feature"),
        ([3, 1, 4, 1, 5], "number", "feature"),
        ([0, 1, 1, 0], "binary", "feature"),
        (["yes", "no", "no", None], "binary", "feature"),
        ([True, False, True], "binary", "feature"),
        (["red", "green", "blue", "red"], "category", "feature"),
        ([np.nan, np.nan, np.nan], None, "dropped: every cell is missing"),
        (list(range(30)), None, "excluded: the row index (it would leak the file's order)"),
        (list(range(1, 31)), None, "excluded: the row index (it would leak the file's order)"),
        ([f"id-{i}" for i in range(30)], None, "excluded: an identifier (30 distinct values in 30 rows)"),
    ],
)
def test_inferred_type(values, kind, use):
    assert schema.infer_type(pd.Series(values)) == (kind, use)


def test_shuffled_integers_are_not_a_row_index():
    assert schema.infer_type(pd.Series([2, 0, 1, 3, 4]))[0] == "number"
    assert not schema.is_row_index(pd.Series([0, 1, 2, None]))


def test_few_distinct_strings_are_a_category_even_when_each_is_rare():
    assert schema.infer_type(pd.Series([f"town-{i}" for i in range(10)]))[0] == "category"  # < 20 rows


def test_overrides_drops_and_the_label():
    frame = pd.DataFrame(
        {
            "rownames": range(1, 41),
            "zip": [f"{10000 + i}" for i in range(40)],
            "grade": list("ABCD") * 10,
            "label": ["x", "y"] * 20,
        }
    )
    columns = schema.infer(frame, DataConfig(types={"zip": "category"}, drop=["grade"]))
    assert [(c.name, c.type, c.use) for c in columns] == [
        ("rownames", None, "excluded: the row index (it would leak the file's order)"),
        ("zip", "category", "feature"),
        ("grade", None, "excluded: data.drop"),
        ("label", None, "label"),
    ]
    printed = schema.table(columns).splitlines()
    assert printed[0].split() == ["column", "type", "missing", "distinct", "use"]
    assert printed[3].split()[:4] == ["zip", "category", "0", "40"]


def test_the_columns_left_out_as_identifiers_travel_with_the_model_for_kiln_score():
    from pipelines.data import preprocessing

    rows = 40
    frame = pd.DataFrame(
        {
            "index": range(rows),
            "order_id": [f"o-{i}" for i in range(rows)],
            "note": ["internal"] * rows,  # dropped by the user, not an identifier of the data's own
            "price": np.linspace(1, 2, rows),
            "label": ["a", "b"] * (rows // 2),
        }
    )
    columns = schema.infer(frame, DataConfig(source="x.csv", label="label", drop=["note"]))
    assert schema.identifiers(columns) == ["index", "order_id", "note"]
    prep = preprocessing.fit(frame, {"price": "number"}, frame["label"], max_categories=5)
    saved = preprocessing.Preprocessing(prep.encoders, prep.labels, identifiers=schema.identifiers(columns))
    assert preprocessing.Preprocessing.from_dict(saved.to_dict()).identifiers == ["index", "order_id", "note"]
    older = {k: v for k, v in saved.to_dict().items() if k != "identifiers"}  # a model saved before the key
    assert preprocessing.Preprocessing.from_dict(older).identifiers == []
