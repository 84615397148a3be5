import numpy as np
import pandas as pd
import pytest

from pipelines.config import DataConfig, SplitConfig
from pipelines.data import sources
from pipelines.errors import DataError


def frame(n=60, classes=("a", "b", "c")):
    rng = np.random.default_rng(0)
    return pd.DataFrame(
        {
            "f1": rng.normal(size=n),
            "f2": rng.normal(5, 2, size=n),
            "label": [classes[i % len(classes)] for i in range(n)],
        }
    )


def test_split_is_stratified_disjoint_and_deterministic():
    labels = np.array([0] * 70 + [1] * 30)
    split = SplitConfig(val=0.2, test=0.1, seed=3)
    train, val, test = sources.stratified_split(labels, split)
    assert len(set(train) | set(val) | set(test)) == 100 == len(train) + len(val) + len(test)
    assert (labels[val] == 1).sum() == 6 and (labels[test] == 1).sum() == 3  # 20% and 10% of each class
    again = sources.stratified_split(labels, split)
    assert all((a == b).all() for a, b in zip((train, val, test), again, strict=True))
    other = sources.stratified_split(labels, SplitConfig(val=0.2, test=0.1, seed=4))
    assert not (other[2] == test).all()


@pytest.mark.parametrize(
    "mutate, cfg, message",
    [
        (lambda d: d.drop(columns="label"), {}, "data.label: column 'label' not in data"),
        (lambda d: d, {"features": ["f1", "nope"]}, "data.features: column 'nope' not in data"),
        (lambda d: d.assign(label="a"), {}, "has 1 class among the labelled rows"),
        (lambda d: d.head(4), {}, "4 rows are too few"),
        (lambda d: d.assign(label=None), {}, "has 0 classes among the labelled rows"),
        (lambda d: d, {"types": {"nope": "number"}}, "data.types: column 'nope' not in data"),
        (lambda d: d, {"types": {"f1": "vector"}}, "data.types.f1: unknown type 'vector'"),
        (lambda d: d.assign(f1="x"), {"types": {"f1": "number"}}, "data.types.f1: number, but the column holds 'x'"),
        (lambda d: d, {"drop": ["label"]}, "data.drop: the label column 'label' cannot be dropped"),
        (lambda d: d, {"drop": ["f1", "f2"]}, "data: no feature columns left besides the label"),
        (lambda d: d, {"drop": ["gone"]}, "data.drop: column 'gone' not in data"),
    ],
)
def test_bad_data_is_named(mutate, cfg, message):
    with pytest.raises(DataError) as err:
        sources.check_frame(mutate(frame()), DataConfig(**cfg))
    assert message in str(err.value)


def test_sources(tmp_path):
    with pytest.raises(DataError, match="data.source: .* not found"):
        sources.resolve_source(DataConfig(source=str(tmp_path / "missing.csv")), tmp_path)
    with pytest.raises(DataError, match="unknown builtin"):
        sources.resolve_source(DataConfig(source="builtin:mnist"), tmp_path)
    frame().to_csv(tmp_path / "rows.csv", index=False)
    source = sources.resolve_source(DataConfig(source=str(tmp_path)), tmp_path)
    assert source.format == "csv" and len(sources.read_local(source)) == 60


def test_builtin_digits_is_written_once_as_parquet(tmp_path):
    source = sources.resolve_source(DataConfig(), tmp_path)
    path = tmp_path / "datasets" / "digits.parquet"
    assert source.paths == [str(path)] and source.format == "parquet"
    written = path.stat().st_mtime_ns
    sources.resolve_source(DataConfig(), tmp_path)
    assert path.stat().st_mtime_ns == written
    df = sources.read_local(source)
    assert df.shape == (1797, 65) and sorted(df["label"].unique()) == list(range(10))


def test_rows_without_a_label_are_left_out_and_said():
    df = frame().assign(label=lambda d: d.label.where(d.index % 10 != 0, None))
    checked = sources.check_frame(df, DataConfig())
    assert len(checked.frame) == 54 and checked.rows_without_label == 6
    assert sources.describe(checked, DataConfig())[0] == "note: 6 rows have no 'label' and are left out"
    assert checked.task == "classification"


@pytest.mark.parametrize(
    "label, why",
    [
        (np.linspace(100_000, 900_000, 60), "numbers with fractions (60 distinct values)"),
        (np.arange(60) * 1000, "60 distinct whole numbers (over 20)"),
    ],
)
def test_a_label_of_measured_numbers_is_a_regression_not_sixty_classes(label, why):
    checked = sources.check_frame(frame().assign(label=label), DataConfig())
    assert checked.task == "regression"
    assert checked.task_note == f"note: task regression (data.task: auto; label 'label': {why})"
    assert checked.task_note in sources.describe(checked, DataConfig())


def test_too_many_classes_are_refused_with_the_hint_to_regress():
    with pytest.raises(
        DataError,
        match="data.label: column 'label' has 60 distinct values, more than "
        "data.max_classes=50.*set data.task: regression",
    ):
        sources.check_frame(
            frame().assign(label=np.arange(60) * 1000), DataConfig(task="classification", max_classes=50)
        )


def test_a_regression_split_covers_the_targets_whole_range():
    target = np.arange(1000, dtype=np.float64) ** 2
    train, val, test = sources.split(target, SplitConfig(val=0.15, test=0.15, seed=0), "regression")
    assert sorted(np.concatenate([train, val, test])) == list(range(1000))
    for part in (val, test):  # a decile stratum each: every split sees low and high targets
        assert target[part].min() < np.quantile(target, 0.1) and target[part].max() > np.quantile(target, 0.9)


def test_integer_class_labels_are_classes():
    checked = sources.check_frame(frame().assign(label=[i % 10 for i in range(60)]), DataConfig())
    assert checked.frame["label"].nunique() == 10


def test_validate_says_which_categories_are_embedded_or_cut_to_max_categories():
    from pipelines.data.schema import Column

    towns = Column("town", "category", 0, 98, "feature")
    plans = Column("plan", "category", 0, 3, "feature")
    auto = DataConfig(label="y")
    assert sources.category_note(towns, auto).startswith("note: column 'town' (98 values) is embedded")
    assert sources.category_note(plans, auto) == ""
    cut = sources.category_note(towns, DataConfig(label="y", categories="onehot"))
    assert "keeps its 50 most frequent of 98 values" in cut


def test_an_object_store_uri_is_read_by_its_suffix_whatever_its_query_options(tmp_path):
    query = "?endpoint_override=127.0.0.1:9000&scheme=http"
    assert sources.resolve_source(DataConfig(source=f"s3://b/rows.csv{query}"), tmp_path).format == "csv"
    assert sources.resolve_source(DataConfig(source=f"s3://b/rows.parquet{query}"), tmp_path).format == "parquet"
    with pytest.raises(DataError, match="neither parquet nor CSV"):
        sources.resolve_source(DataConfig(source=f"s3://b/rows.json{query}"), tmp_path)
