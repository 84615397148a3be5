"""The wide path of bag-encoded text (model.text_wide): it starts at zero, learns a word's weight directly, and
checkpoints saved before it existed still load as they were trained."""

from __future__ import annotations

import json

import pandas as pd
import torch

from pipelines.config import ModelConfig
from pipelines.data import preprocessing
from pipelines.model import checkpoint
from pipelines.model.networks import build_model
from pipelines.training.batches import tensors

REVIEWS = ["good food", "bad food", "not good at all", "very good", "awful", "great and good"] * 20
LABELS = pd.Series([1, 0, 0, 1, 0, 1] * 20)


def text_model(**model):
    frame = pd.DataFrame({"review": REVIEWS})
    prep = preprocessing.fit(frame, {"review": "text"}, LABELS, max_categories=5, max_length=8)
    cfg = ModelConfig(hidden=[8], **model)
    net = build_model(cfg, input_dim=prep.width, num_classes=prep.output_dim, slots=prep.slots)
    return prep, cfg, net, tensors(prep.transform(frame))


def test_the_wide_path_starts_at_zero_and_is_part_of_the_model_by_default():
    torch.manual_seed(0)
    _, _, wide, x = text_model()
    torch.manual_seed(0)
    _, _, deep, _ = text_model(text_wide=False)
    assert len(wide.wides) == 1 and len(deep.wides) == 0
    deep.load_state_dict({k: v for k, v in wide.state_dict().items() if not k.startswith("wides.")})
    assert torch.equal(wide.eval()(x), deep.eval()(x))  # zero-initialised: training starts from the deep model
    assert any(k.startswith("wides.0.words") for k in wide.state_dict())


def test_a_linear_word_signal_is_learned_faster_with_the_wide_path():
    """The labels follow single words: a linear model's task, which the wide path carries directly."""
    losses = {}
    for wide in (True, False):
        torch.manual_seed(0)
        _, _, net, x = text_model(text_wide=wide, dropout=0.0)
        optimizer = torch.optim.Adam(net.parameters(), lr=1e-2)
        y = torch.tensor(LABELS.to_numpy())
        for _ in range(15):
            optimizer.zero_grad()
            loss = torch.nn.functional.cross_entropy(net(x), y)
            loss.backward()
            optimizer.step()
        losses[wide] = loss.item()
    assert losses[True] < losses[False], losses


def test_a_checkpoint_saved_before_the_wide_path_loads_as_it_was_trained(tmp_path):
    prep, _, old, x = text_model(text_wide=False)
    folder = tmp_path / "ckpt"
    folder.mkdir()
    cfg = ModelConfig(hidden=[8], text_wide=False)
    checkpoint.save(folder, model=old, optimizer=None, model_cfg=cfg, preprocessing=prep, epoch=1, metrics={})
    meta = json.loads((folder / checkpoint.META_FILE).read_text())
    del meta["model"]["text_wide"]  # as Kiln wrote it before the key existed
    (folder / checkpoint.META_FILE).write_text(json.dumps(meta))
    loaded, _, _ = checkpoint.load_model(folder)
    assert torch.allclose(loaded(x), old.eval()(x))
