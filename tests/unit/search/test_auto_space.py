"""tune.search_space: auto: a space that fits the data's columns and size, the user's keys winning, and keys that
cannot apply to the data refused naming them."""

from pathlib import Path

import pytest

from pipelines.config import load_config
from pipelines.errors import ConfigError
from pipelines.search import auto


def test_the_space_follows_the_column_kinds_and_the_rows():
    table = auto.build({"age": "number", "city": "category"}, rows=1000, task="classification")
    assert {"train.lr", "train.weight_decay", "model.hidden", "model.dropout", "train.batch_size"} <= set(table)
    assert not any(k.startswith(("model.image", "model.text")) for k in table)
    assert all(700 / b >= 10 for b in table["train.batch_size"]["choice"])
    large = auto.build({"age": "number"}, rows=100_000, task="regression")
    assert max(map(sum, large["model.hidden"]["choice"])) > max(map(sum, table["model.hidden"]["choice"]))
    grey = auto.build({"image": "image"}, rows=1797, task="classification")
    colour = auto.build({"image": "image"}, rows=1797, task="classification", colour=True)
    assert "model.image_channels" in grey and "model.image_standardize" not in grey
    assert colour["model.image_standardize"] == {"choice": ["dataset", "per_image"]}
    assert "model.text_encoder" in auto.build({"review": "text"}, rows=5000, task="classification")


def test_written_keys_win_and_a_key_the_data_cannot_use_is_refused():
    mine = {"auto": True, "train.lr": {"loguniform": [0.001, 0.002]}}
    space = auto.resolve(mine, {"x": "number"}, rows=500, task="regression")
    assert space["train.lr"] == {"loguniform": [0.001, 0.002]} and "model.hidden" in space
    with pytest.raises(ConfigError, match=r"tune\.search_space\.model\.image_channels: this data has no image"):
        auto.resolve(
            {"auto": True, "model.image_channels": {"choice": [[8]]}}, {"x": "number"}, rows=500, task="regression"
        )
    written = {"train.lr": {"loguniform": [0.001, 0.01]}}
    assert auto.resolve(written, {"x": "number"}, rows=500, task="regression") is written


def test_the_quickstart_searches_an_auto_space_that_validates_as_a_written_one():
    quickstart = Path(__file__).parents[3] / "configs" / "quickstart.yaml"
    cfg = load_config(quickstart, ["tune.search_space.train.lr={loguniform: [0.001, 0.002]}"])
    assert cfg.tune.search_space["auto"] is True
    resolved = cfg.for_task("classification").with_space({f"p{i}": "number" for i in range(64)}, rows=1797)
    assert resolved.tune.search_space["train.lr"] == {"loguniform": [0.001, 0.002]}
    assert "auto" not in resolved.tune.search_space and "model.dropout" in resolved.tune.search_space


def test_long_texts_search_the_bag_alone():
    short = auto.build({"tweet": "text"}, rows=5000, task="classification", text_words=30)
    long = auto.build({"review": "text"}, rows=5000, task="classification", text_words=200)
    assert short["model.text_encoder"] == {"choice": ["bag", "transformer"]}
    assert "model.text_encoder" not in long and "model.embedding_dim" in long
