"""Categories with many values (data.categories): embedded as one id column the model looks up, so a city, an
agent or a product with hundreds of values keeps them all, where one-hot keeps data.max_categories and lumps the
rest into "other"."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import torch

from pipelines.config import KilnConfig, ModelConfig
from pipelines.data import preprocessing
from pipelines.model import checkpoint
from pipelines.model.networks import build_model, sample_input
from pipelines.training import local
from pipelines.training.batches import tensors

TOWNS = pd.Series(["a"] * 5 + ["b"] * 3 + ["c"] * 2 + ["d"])  # d is seen once


def test_auto_embeds_only_a_column_with_more_values_than_max_categories():
    many = preprocessing.fit_encoder("town", "category", TOWNS, max_categories=2, categories="auto")
    few = preprocessing.fit_encoder("town", "category", TOWNS, max_categories=4, categories="auto")
    assert many.embed and many.width == 1 and many.names == ["town"]
    assert not few.embed and few.width == 6
    assert not preprocessing.fit_encoder("town", "category", TOWNS, max_categories=2, categories="onehot").embed


def test_embedded_ids_follow_the_one_hot_order_and_a_value_seen_once_is_other():
    encoder = preprocessing.fit_encoder("town", "category", TOWNS, max_categories=2, categories="embed")
    assert encoder.levels == ["a", "b", "c"]  # d, seen once in train, has no vector of its own
    ids = encoder.encode(pd.Series(["a", "c", "d", "never seen", None]))
    assert ids.ravel().tolist() == [0, 2, 4, 4, 3]  # the levels, then missing (3), then other (4)


def test_a_preprocessing_saved_before_embeddings_loads_as_one_hot():
    prep = preprocessing.fit(
        pd.DataFrame({"town": TOWNS}), {"town": "category"}, pd.Series([0, 1] * 5 + [0]), max_categories=2
    )
    saved = json.loads(json.dumps(prep.to_dict()))
    del saved["encoders"][0]["embed"]  # as Kiln wrote it before the key existed
    assert preprocessing.Preprocessing.from_dict(saved) == prep and not prep.encoders[0].embed


def embedded_model(tmp_path=None):
    frame = pd.DataFrame({"town": TOWNS, "x": np.arange(len(TOWNS), dtype=float)})
    prep = preprocessing.fit(
        frame, {"town": "category", "x": "number"}, pd.Series([0, 1] * 5 + [0]), max_categories=2, categories="auto"
    )
    cfg = ModelConfig(hidden=[8], embedding_dim=4)
    return prep, cfg, build_model(cfg, input_dim=prep.width, num_classes=2, slots=prep.slots), frame


def test_the_model_looks_up_the_column_and_a_checkpoint_loads_as_trained(tmp_path):
    prep, cfg, net, frame = embedded_model()
    assert [s.kind for s in prep.slots] == ["category"] and prep.width == 2
    x = tensors(prep.transform(frame))
    assert net.eval()(x).shape == (len(frame), 2)
    assert net(sample_input(prep.width, prep.slots, 16)).shape == (16, 2)  # kiln plan's FLOP count
    checkpoint.save(tmp_path, model=net, optimizer=None, model_cfg=cfg, preprocessing=prep, epoch=1, metrics={})
    loaded, loaded_prep, _ = checkpoint.load_model(tmp_path)
    assert loaded_prep == prep
    assert torch.allclose(loaded(x), net(x))


def test_a_400_value_category_is_learned_where_one_hot_of_the_top_50_cannot():
    """Each town moves the label by its own amount: one-hot keeps 50 towns and the other 350 share a column."""
    rng = np.random.default_rng(0)
    rows, towns = 4000, 400
    town, x = rng.integers(0, towns, rows), rng.normal(size=rows)
    effect = rng.normal(0, 1, towns)
    frame = pd.DataFrame(
        {"town": [f"t{t}" for t in town], "x": x, "y": 3 * effect[town] + x + rng.normal(0, 0.5, rows)}
    )
    rmse = {}
    for categories in ("onehot", "auto"):
        cfg = KilnConfig.model_validate({"data": {"label": "y", "categories": categories}, "train": {"epochs": 10}})
        rmse[categories] = local.fit(cfg, frame).test["test_rmse"]
    assert rmse["auto"] < 0.8 < 2.0 < rmse["onehot"], rmse  # noise is 0.5; the towns' spread is 3
