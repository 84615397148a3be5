"""The search's model shapes, and the run's check of the plan against the epochs it measured."""

from pathlib import Path

import pandas as pd
import pytest

from pipelines.config import load_config
from pipelines.data import preprocessing
from pipelines.plan import cost, hardware, shapes
from pipelines.plan.check import EpochCheck

REVIEWS = Path(__file__).parents[3] / "configs" / "examples" / "reviews.yaml"


def with_space(space: str, *overrides: str):
    return load_config(REVIEWS, [f"tune.search_space={space}", *overrides])


def test_each_encoder_choice_is_a_shape_and_the_learning_rate_is_not():
    cfg = load_config(REVIEWS)
    assert shapes.shape_samples(cfg) == [{"model.text_encoder": "bag"}, {"model.text_encoder": "transformer"}]
    assert (
        shapes.describe({"model.text_encoder": "bag", "train.batch_size": 64}) == "text_encoder=bag, "
        "train.batch_size=64"
    )


def test_ranges_are_priced_at_their_middle_and_many_combinations_are_capped_the_same_way_each_call():
    cfg = with_space(
        "{model.embedding_dim: {randint: [16, 49]}, model.dropout: {uniform: [0.0, 0.5]}, "
        "train.batch_size: {choice: [16, 32, 64, 128]}, model.text_layers: {choice: [1, 2, 3]}}"
    )
    samples = shapes.shape_samples(cfg)
    assert len(samples) == shapes.MAX_SHAPES and samples == shapes.shape_samples(cfg)
    assert {s["model.embedding_dim"] for s in samples} == {32}
    assert all("model.dropout" not in s for s in samples)  # dropout changes no tensor's shape


def text_table(rows: int = 200) -> pd.DataFrame:
    words = ["good", "bad", "kettle", "lamp", "broke", "quiet", "loud", "works", "fine", "again"]
    return pd.DataFrame(
        {
            "review": [" ".join(words[(i * k) % 10] for k in range(1, 13)) for i in range(rows)],
            "label": ["p", "n"] * (rows // 2),
        }
    )


def test_the_runs_check_times_text_shapes_on_this_machine_and_prices_a_transformer_above_a_bag():
    frame = text_table()
    prep = preprocessing.fit(frame, {"review": "text"}, frame["label"], max_categories=5, max_length=16)
    said = []

    def check(encoder: str) -> float:
        cfg = with_space("{}", "tune.num_samples=1", f"model.text_encoder={encoder}")
        return EpochCheck.predict(
            cfg, input_dim=prep.width, num_classes=2, train_rows=1000, slots=prep.slots, say=said.append
        ).predicted_s

    bag, transformer = check("bag"), check("transformer")
    assert transformer > 2 * bag > 0
    assert said and "model shape" in said[0]


def test_an_mlp_run_uses_the_recorded_profile_and_calibrates_nothing():
    cfg = with_space("{}", "tune.num_samples=1")
    said = []
    predicted = EpochCheck.predict(cfg, input_dim=10, num_classes=2, train_rows=1000, say=said.append).predicted_s
    expected = cost.shape_epoch(cfg, {}, hardware.load_profile("local"), input_dim=10, num_classes=2, train_rows=1000)[
        "epoch_time_s"
    ]
    assert predicted == pytest.approx(expected) and said == []
