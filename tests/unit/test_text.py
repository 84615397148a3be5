"""Text columns: the word vocabulary (pipelines/data/text.py), its encoding in the matrix, both encoders learning a
text task in-process, the text baseline, and the inference rule that calls a column text."""

import json
import re

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F

from pipelines.config import DataConfig, ModelConfig
from pipelines.data import builtin, preprocessing, schema, sources, text
from pipelines.model import baseline
from pipelines.model.networks import build_model
from pipelines.training.batches import rows, tensors


def test_vocabulary_is_the_train_splits_frequent_words_and_ids_pad_to_max_length():
    vocabulary = text.fit_vocabulary(["Good kettle!", "good, GOOD lamp", "the kettle broke", None], size=10)
    assert vocabulary == ["good", "kettle"]  # seen twice or more, most frequent first; "!" only once
    ids = text.token_ids(["good lamp kettle good", "", None, "kettle"], vocabulary, max_length=3)
    good, kettle = vocabulary.index("good") + text.RESERVED, vocabulary.index("kettle") + text.RESERVED
    assert ids.tolist() == [[good, text.UNKNOWN, kettle], [text.EMPTY, 0, 0], [text.EMPTY, 0, 0], [kettle, 0, 0]]


def test_a_text_column_travels_as_json_and_encodes_the_same_after():
    frame = pd.DataFrame(
        {
            "note": ["a very good day", "a bad day", None, "good good"] * 5,
            "x": range(20),
            "label": ["p", "n", "n", "p"] * 5,
        }
    )
    prep = preprocessing.fit(frame, {"note": "text", "x": "number"}, frame["label"], max_categories=5, max_length=4)
    again = preprocessing.Preprocessing.from_dict(json.loads(json.dumps(prep.to_dict())))
    assert again == prep and prep.width == 5
    assert prep.slots == [("text", 0, 4, len(prep.encoders[0].levels) + 3, 0, 0, "note", 4, 0, (), (), "", "")]
    batch, restored = prep.transform(frame[["note", "x"]]), again.transform(frame[["note", "x"]])
    assert batch.keys() == restored.keys() == {"x", "text:note"}
    assert batch["text:note"].dtype == np.int64 and batch["text:note"].shape == (20, 4)  # token ids, 0 pads
    assert batch["x"].dtype == np.float32 and batch["x"].shape == (20, 1)
    for key in batch:
        np.testing.assert_array_equal(restored[key], batch[key])


def test_character_ngrams_catch_what_the_word_vocabulary_drops_and_are_stable():
    ids = text.char_ngram_ids(["Great phone", "great phone", "graet phone", None, "@kiln_dev http://x.io"], count=64)
    assert ids.shape == (5, 64) and ids.dtype == np.int64
    assert ((ids >= 0) & (ids < text.CHAR_BUCKETS)).all()
    grams = [set(row[row > 0].tolist()) for row in ids]
    assert grams[0] != grams[1], "case is kept"
    shared = len(grams[1] & grams[2]) / len(grams[1] | grams[2])
    assert 0.3 < shared < 1, "a misspelling still shares most of its n-grams"
    assert grams[3] == set(), "a missing text has none"
    assert len(grams[4]) > 20
    # Same ids in another process: crc32, not Python's salted hash().
    assert text.char_ngram_ids(["Great phone"], count=64).tolist() == ids[:1].tolist()
    assert text.char_ngram_ids(["abcdefghij" * 10], count=8).shape == (1, 8)


def test_a_text_column_with_character_ngrams_round_trips_and_feeds_the_bag():
    from pipelines.config import ModelConfig
    from pipelines.model.networks import build_model

    frame = pd.DataFrame(
        {"note": ["a very good day", "a bad day", None, "good good"] * 5, "label": ["p", "n", "n", "p"] * 5}
    )
    prep = preprocessing.fit(frame, {"note": "text"}, frame["label"], max_categories=5, max_length=4, char_ngrams=16)
    again = preprocessing.Preprocessing.from_dict(json.loads(json.dumps(prep.to_dict())))
    assert again == prep and prep.width == 4 + 16 and prep.slots[0].chars == 16
    x = prep.transform(frame[["note"]])
    assert (x["text:note"][:, 4:] > 0).sum() > 0
    model = build_model(ModelConfig(), input_dim=prep.width, num_classes=2, slots=prep.slots)
    assert model(tensors(x)).shape == (20, 2)


def test_a_bpe_vocabulary_travels_as_json_and_still_reads_a_misspelt_word_as_pieces_it_knows():
    frame = pd.DataFrame(
        {
            "note": ["the kettle works well", "the kettle broke", None, "works well again"] * 10,
            "label": ["p", "n", "n", "p"] * 10,
        }
    )
    prep = preprocessing.fit(
        frame, {"note": "text"}, frame["label"], max_categories=5, max_length=8, vocab_size=60, tokenizer="bpe"
    )
    (encoder,) = prep.encoders
    assert encoder.tokenizer and encoder.levels == [] and 3 < encoder.vocabulary_size <= 60 + text.RESERVED
    again = preprocessing.Preprocessing.from_dict(json.loads(json.dumps(prep.to_dict())))
    assert again == prep
    ids = again.transform(pd.DataFrame({"note": ["the ketle works", "", None, "zzz qqq"]}))["text:note"]
    assert (ids[0] > text.UNKNOWN).sum() >= 3  # "ketle": pieces of "kettle", not one unknown word
    assert ids[1].tolist() == ids[2].tolist() == [text.EMPTY] + [0] * 7
    assert ids[3][0] == text.UNKNOWN  # letters never seen in training
    words = preprocessing.fit(frame, {"note": "text"}, frame["label"], max_categories=5, max_length=8)
    assert words.transform(pd.DataFrame({"note": ["the ketle works"]}))["text:note"][0, 1] == text.UNKNOWN


def negation_task(rows: int, seed: int) -> pd.DataFrame:
    """Positive when the product is good or "not bad": word order decides, one word at a time does not."""
    rng = np.random.default_rng(seed)
    good, bad = rng.choice(["great", "solid", "quiet"], rows), rng.choice(["awful", "noisy", "flimsy"], rows)
    kind = rng.integers(0, 4, rows)
    phrase = np.select([kind == 0, kind == 1, kind == 2], [good, "not " + good, bad], "not " + bad)
    filler = rng.choice(["bought it in may", "it came in a box", "my son uses it daily"], rows)
    return pd.DataFrame(
        {
            "review": [f"{f}, honestly the lamp is {p}" for f, p in zip(filler, phrase, strict=True)],
            "label": np.where((kind == 0) | (kind == 3), "pos", "neg"),
        }
    )


@pytest.mark.parametrize("encoder, tokenizer", [("bag", "words"), ("transformer", "words"), ("bag", "bpe")])
def test_each_text_encoder_learns_a_task_word_order_decides(encoder, tokenizer):
    train, val = negation_task(800, 0), negation_task(200, 1)
    prep = preprocessing.fit(
        train, {"review": "text"}, train["label"], max_categories=5, max_length=16, tokenizer=tokenizer
    )
    torch.manual_seed(0)
    model = build_model(
        ModelConfig(hidden=[32], text_encoder=encoder, embedding_dim=16, text_layers=1, text_heads=2, dropout=0.0),
        input_dim=prep.width,
        num_classes=2,
        slots=prep.slots,
    )
    x, y = tensors(prep.transform(train[["review"]])), torch.tensor(prep.encode(train["label"]))
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    for _ in range(15):
        for start in range(0, len(y), 32):
            optimizer.zero_grad()
            F.cross_entropy(model(rows(x, slice(start, start + 32))), y[start : start + 32]).backward()
            optimizer.step()
    model.eval()
    with torch.no_grad():
        predicted = model(tensors(prep.transform(val[["review"]]))).argmax(1).numpy()
    assert np.mean(predicted == prep.encode(val["label"])) > 0.95


def test_the_transformer_reads_a_batch_as_long_as_its_longest_text_whatever_max_length():
    """Its forward trims the padding after the batch's longest text: the same texts padded to 8 or to 40 ids
    give the same outputs, so data.max_length costs nothing on short texts."""
    texts = ["good kettle", "the kettle broke on the second day", None, "good"]
    vocabulary = text.fit_vocabulary(texts * 2, size=20)
    torch.manual_seed(0)
    from pipelines.model.networks import TextTransformer

    encoder = TextTransformer(len(vocabulary) + text.RESERVED, 40, dim=16, layers=1, heads=2, dropout=0.0).eval()
    short, long = (torch.tensor(text.token_ids(texts, vocabulary, max_length=n)) for n in (8, 40))
    assert (long[:, 8:] == 0).all() and long.shape == (4, 40)
    seen = []
    encoder.encoder.layers[0].register_forward_hook(lambda module, args, out: seen.append(out.shape[1]))
    with torch.no_grad():
        torch.testing.assert_close(encoder(short), encoder(long))
    assert seen == [7, 7]  # the longest text's 7 words, not 8 or 40 positions


def test_the_text_baseline_is_tfidf_and_a_linear_model_on_every_column(tmp_path):
    frame = pd.read_parquet(builtin.write_table("reviews", tmp_path))
    checked = sources.check_frame(frame, DataConfig(label="sentiment"))
    assert checked.types == {"review": "text", "product": "category", "price": "number", "verified": "binary"}
    train, test = checked.frame.iloc[:1500], checked.frame.iloc[1500:]
    fitted = baseline.fit_and_score(
        train[checked.features],
        train["sentiment"].to_numpy(),
        test[checked.features],
        test["sentiment"].to_numpy(),
        checked.types,
    )
    assert fitted.name == "TF-IDF + logistic regression"
    majority = test["sentiment"].value_counts(normalize=True).max()
    assert fitted.test_accuracy > majority + 0.1


@pytest.mark.parametrize(
    "values, kind",
    [
        ([f"the kettle number {i} arrived late and was noisy" for i in range(25)], "text"),
        (["the same long sentence that repeats over and over"] * 12 + ["short"] * 7 + ["a"] * 6, "category"),
        ([f"ref-{i}" for i in range(25)], None),  # short and distinct: an identifier
        ([f"7f3c1e2a-9b4d-4c8e-a1f0-{i:012d}" for i in range(25)], None),  # a UUID is long, but one word
        ([f"https://shop.example.com/products/kettle-{i}?ref=mail" for i in range(25)], None),
        ([f"a long sentence about kettle {i} that is text" for i in range(10)], "category"),  # under 20 rows
    ],
)
def test_long_mostly_distinct_strings_are_text(values, kind):
    assert schema.infer_type(pd.Series(values))[0] == kind


def test_a_model_that_takes_numbers_only_refuses_text_columns():
    with pytest.raises(ValueError, match="model.name: cnn takes numbers only"):
        build_model(ModelConfig(name="cnn"), input_dim=16, num_classes=2, slots=[(0, 8, 20)])


def test_pandas_na_is_a_missing_text_as_none_is():
    vocabulary = text.fit_vocabulary(pd.array(["good kettle", pd.NA, pd.NA, "good"], dtype="string"), size=10)
    assert "na" not in vocabulary
    ids = text.token_ids(pd.array([pd.NA, None], dtype="string"), vocabulary, max_length=2)
    assert ids.tolist() == [[text.EMPTY, 0], [text.EMPTY, 0]]


def test_each_text_column_can_have_its_own_encoder():
    from pipelines.config import check_column_encoders, load_config
    from pipelines.errors import ConfigError
    from pipelines.model.networks import TextBag, TextTransformer

    frame = pd.DataFrame(
        {
            "title": ["good lamp", "bad lamp"] * 10,
            "body": ["it is not bad", "it is bad"] * 10,
            "town": ["a", "b"] * 10,
            "label": ["p", "n"] * 10,
        }
    )
    types = {"title": "text", "body": "text", "town": "category"}
    prep = preprocessing.fit(frame, types, frame["label"], max_categories=5, max_length=6)
    cfg = load_config(None, ["model.columns.body={text_encoder: transformer, embedding_dim: 8, text_heads: 2}"]).model
    check_column_encoders(load_config(None, ["model.columns.body.text_encoder=transformer"]), types)
    model = build_model(cfg, input_dim=prep.width, num_classes=2, slots=prep.slots)
    title, body = model.encoders
    assert isinstance(title, TextBag) and title.out_dim == 64  # the model's settings
    assert isinstance(body, TextTransformer) and body.out_dim == 8  # the column's own
    assert model(tensors(prep.transform(frame[["title", "body", "town"]]))).shape == (20, 2)
    for column, said in (
        (
            "town",
            "model.columns.town: a category column; encoder settings apply to text and image columns (title, body)",
        ),
        ("colour", "model.columns.colour: not a feature column of the data"),
    ):
        with pytest.raises(ConfigError, match=re.escape(said)):
            check_column_encoders(load_config(None, [f"model.columns.{column}.embedding_dim=8"]), types)
    searched = 'tune.search_space={"model.columns.titel.text_encoder": {"choice": [bag, transformer]}}'
    with pytest.raises(ConfigError, match=r"tune.search_space.model.columns.titel.text_encoder: not a feature column"):
        check_column_encoders(load_config(None, [searched]), types)  # a typo in a searched key is no silent no-op
    with pytest.raises(ConfigError, match="model.columns.body: image_channels does not apply to text column 'body'"):
        check_column_encoders(load_config(None, ["model.columns.body.image_channels=[8]"]), types)
    with pytest.raises(ConfigError, match=r"model: columns.body: text_heads \(3\) must divide embedding_dim \(64\)"):
        load_config(None, ["model.columns.body={text_encoder: transformer, text_heads: 3}"])
    space = 'tune.search_space={"model.columns.body.text_encoder": {"choice": [bag, transformer]}}'
    spaced = load_config(None, [space])
    assert (
        spaced.with_sample({"model.columns.body.text_encoder": "transformer"}).model.for_column("body").text_encoder
        == "transformer"
    )
