import numpy as np
import pandas as pd
import pytest

from pipelines import data
from pipelines.config import DataConfig, SplitConfig


def frame(n=60, classes=("a", "b", "c")):
    rng = np.random.default_rng(0)
    return pd.DataFrame({"f1": rng.normal(size=n), "f2": rng.normal(5, 2, size=n),
                         "label": [classes[i % len(classes)] for i in range(n)]})


def test_split_is_stratified_disjoint_and_deterministic():
    labels = np.array([0] * 70 + [1] * 30)
    split = SplitConfig(val=0.2, test=0.1, seed=3)
    train, val, test = data.stratified_split(labels, split)
    assert len(set(train) | set(val) | set(test)) == 100 == len(train) + len(val) + len(test)
    assert (labels[val] == 1).sum() == 6 and (labels[test] == 1).sum() == 3  # 20% and 10% of each class
    again = data.stratified_split(labels, split)
    assert all((a == b).all() for a, b in zip((train, val, test), again, strict=True))
    other = data.stratified_split(labels, SplitConfig(val=0.2, test=0.1, seed=4))
    assert not (other[2] == test).all()


def test_statistics_come_from_train_rows_only():
    df = frame()
    train = df.iloc[:30]
    prep = data.fit_preprocessing(train, ["f1", "f2"], df["label"])
    assert prep.mean == pytest.approx(train[["f1", "f2"]].mean().tolist())
    standardised = prep.transform(train[["f1", "f2"]].to_numpy())
    assert standardised.mean(axis=0) == pytest.approx([0, 0], abs=1e-6)
    assert standardised.std(axis=0) == pytest.approx([1, 1], abs=1e-5)


def test_constant_column_is_not_divided_by_zero():
    df = frame().assign(f2=1.0)
    prep = data.fit_preprocessing(df, ["f1", "f2"], df["label"])
    assert np.isfinite(prep.transform(df[["f1", "f2"]].to_numpy())).all()


def test_string_labels_round_trip_through_json():
    df = frame()
    prep = data.fit_preprocessing(df, ["f1", "f2"], df["label"])
    assert prep.labels == ["a", "b", "c"]
    restored = data.Preprocessing.from_dict(__import__("json").loads(__import__("json").dumps(prep.to_dict())))
    assert restored.encode(pd.Series(["c", "a"])).tolist() == [2, 0]


def test_integer_labels_stay_integers():
    prep = data.fit_preprocessing(frame(), ["f1"], pd.Series(np.array([3, 1, 2, 1])))
    assert prep.labels == [1, 2, 3] and all(type(v) is int for v in prep.labels)


@pytest.mark.parametrize("mutate, cfg, message", [
    (lambda d: d.drop(columns="label"), {}, "data.label: column 'label' not in data"),
    (lambda d: d, {"features": ["f1", "nope"]}, "data.features: column 'nope' not in data"),
    (lambda d: d.assign(f1="x"), {}, "feature column 'f1' is not numeric"),
    (lambda d: d.assign(f2=np.where(np.arange(len(d)) == 3, np.nan, d.f2)), {}, "'f2' has 1 NaN or infinite"),
    (lambda d: d.assign(f2=np.inf), {}, "'f2' has 60 NaN or infinite"),
    (lambda d: d.assign(label="a"), {}, "has a single class"),
    (lambda d: d.head(4), {}, "4 rows are too few"),
    (lambda d: d.assign(label=None), {}, "has 60 missing values"),
])
def test_bad_data_is_named(mutate, cfg, message):
    with pytest.raises(data.DataError) as err:
        data.check_frame(mutate(frame()), DataConfig(**cfg))
    assert message in str(err.value)


def test_sources(tmp_path):
    with pytest.raises(data.DataError, match="data.source: .* not found"):
        data.resolve_source(DataConfig(source=str(tmp_path / "missing.csv")), tmp_path)
    with pytest.raises(data.DataError, match="unknown builtin"):
        data.resolve_source(DataConfig(source="builtin:mnist"), tmp_path)
    frame().to_csv(tmp_path / "rows.csv", index=False)
    source = data.resolve_source(DataConfig(source=str(tmp_path)), tmp_path)
    assert source.format == "csv" and len(data.read_local(source)) == 60


def test_builtin_digits_is_written_once_as_parquet(tmp_path):
    source = data.resolve_source(DataConfig(), tmp_path)
    path = tmp_path / "datasets" / "digits.parquet"
    assert source.paths == [str(path)] and source.format == "parquet"
    written = path.stat().st_mtime_ns
    data.resolve_source(DataConfig(), tmp_path)
    assert path.stat().st_mtime_ns == written
    df = data.read_local(source)
    assert df.shape == (1797, 65) and sorted(df["label"].unique()) == list(range(10))
