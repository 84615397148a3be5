"""A pretrained text encoder that trains inside the network (train.finetune), on a tiny BERT this test saves
(2 layers, 32 wide, with all-MiniLM-L6-v2's tokenizer files): token ids in, only the chosen layers moving, the
backbone at its own learning rate, and a checkpoint that loads into a version and answers as it did."""

import json
import shutil

import numpy as np
import pandas as pd
import pytest
import torch

from pipelines.config import ModelConfig, TrainConfig
from pipelines.data import preprocessing, pretrained
from pipelines.errors import ConfigError
from pipelines.model import checkpoint, networks
from pipelines.training import recipe

FRAME = pd.DataFrame(
    {
        "review": ["great kettle, boils fast", "broke after a week", None, "fine", "awful lid", "love it"] * 4,
        "price": np.arange(24.0),
        "label": ["pos", "neg", "neg", "pos", "neg", "pos"] * 4,
    }
)


def fitted(folder, finetune: str) -> preprocessing.Preprocessing:
    backbones = pretrained.columns(
        ModelConfig(text_encoder="pretrained", pretrained=str(folder)), {"review": "text", "price": "number"}, finetune
    )
    return preprocessing.fit(
        FRAME, {"review": "text", "price": "number"}, FRAME["label"], max_categories=5, backbones=backbones
    )


def test_a_fine_tuned_column_is_the_tokenizers_ids_shifted_by_one_with_zero_padding(tiny):
    prep = fitted(tiny, "last_layers:1")
    (encoder, _) = prep.encoders
    assert (encoder.finetune, encoder.slotted, encoder.frozen, encoder.max_length) == (
        "last_layers:1",
        True,
        False,
        512,
    )
    batch = prep.transform(FRAME[["review", "price"]])
    ids = batch["text:review"]
    assert ids.dtype == np.int64 and ids.shape == (24, 512) and batch["x"].shape == (24, 1)
    from transformers import AutoTokenizer

    own = AutoTokenizer.from_pretrained(tiny)("great kettle, boils fast")["input_ids"]
    assert list(ids[0, : len(own)]) == [i + 1 for i in own] and not ids[0, len(own) :].any()
    assert list(ids[2, :3]) == [101 + 1, 102 + 1, 0]  # a missing text: the empty text, [CLS] [SEP]
    (slot,) = prep.slots
    assert (slot.pretrained, slot.key, slot.length) == (str(tiny), "text:review", len(own))


def test_only_the_chosen_layers_train_and_the_backbone_takes_its_own_learning_rate(tiny):
    prep = fitted(tiny, "last_layers:1")
    model = networks.build_model(ModelConfig(), input_dim=prep.width, num_classes=2, slots=prep.slots)
    networks.finetune(model, "last_layers:1")
    cfg = TrainConfig(lr=1e-2, backbone_lr=1e-4, warmup_fraction=0.0, schedule="constant")
    optimizer = recipe.optimizer(model, cfg)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    batch = {k: torch.from_numpy(v) for k, v in prep.transform(FRAME[["review", "price"]]).items()}
    schedule = recipe.Schedule(optimizer, cfg, steps_per_epoch=1)
    for _ in range(2):
        optimizer.zero_grad()
        torch.nn.functional.cross_entropy(model(batch), torch.from_numpy(prep.encode(FRAME["label"]))).backward()
        schedule.before_step()
        optimizer.step()
    moved = {k for k, v in model.state_dict().items() if not torch.equal(v, before[k])}
    assert any(k.startswith("head.") for k in moved)
    assert any(".encoder.layer.1." in k for k in moved)
    assert not any(".encoder.layer.0." in k or ".embeddings." in k or ".pooler." in k for k in moved)
    rates = sorted({group["lr"] for group in optimizer.param_groups})
    assert rates == pytest.approx([1e-4, 1e-2])  # the backbone's groups at backbone_lr, the head's at lr

    networks.finetune(model, "all")
    trained = {n for n, p in model.named_parameters() if p.requires_grad}
    assert any(".embeddings." in n for n in trained) and not any(".pooler." in n for n in trained)


def test_last_layers_beyond_the_models_layers_is_refused_naming_the_key_and_folder(tiny):
    with pytest.raises(ConfigError, match=rf"train.finetune: last_layers:3, but {tiny} .* has 2 layers"):
        fitted(tiny, "last_layers:3")
    with pytest.raises(ValueError, match="frozen, all or last_layers:N"):
        TrainConfig(finetune="last_layers:0")


def test_a_fine_tuned_checkpoint_carried_into_a_version_answers_as_it_did(tiny, tmp_path):
    from pipelines.model.inference import InferenceModel
    from pipelines.tracking import registry

    prep = fitted(tiny, "all")
    model = networks.build_model(ModelConfig(), input_dim=prep.width, num_classes=2, slots=prep.slots)
    networks.finetune(model, "all")
    with torch.no_grad():  # weights unlike the folder's: the version must answer with the trained ones
        for parameter in model.parameters():
            parameter.add_(0.05 * torch.randn_like(parameter))
    trial = tmp_path / "trial"
    trial.mkdir()
    checkpoint.save(
        trial, model=model, optimizer=None, model_cfg=ModelConfig(), preprocessing=prep, epoch=1, metrics={}
    )
    version = tmp_path / "version"
    version.mkdir()
    for name in registry.SERVED_FILES:
        shutil.copyfile(trial / name, version / name)
    registry.carry_backbones(version)
    assert json.loads((version / "kiln.json").read_text())["preprocessing"]["encoders"][0]["pretrained"] == (
        "pretrained/0"
    )
    weights = torch.load(version / "model.pt", weights_only=True)
    assert not any(".model." in k for k in weights) and any(k.startswith("head.") for k in weights)
    from safetensors.torch import load_file

    carried, original = load_file(version / "pretrained/0/model.safetensors"), load_file(tiny / "model.safetensors")
    key = next(k for k in carried if k.endswith("word_embeddings.weight"))
    assert not torch.equal(carried[key], original[key])  # the copy holds the fine-tuned weights, as safetensors
    rows = FRAME[["review", "price"]].head(6)
    with torch.no_grad():
        expected = torch.softmax(
            model.eval()({k: torch.from_numpy(v) for k, v in prep.transform(rows).items()}), dim=1
        ).numpy()
    np.testing.assert_allclose(InferenceModel(version).outputs(rows), expected, atol=1e-5)


def test_the_training_loop_fine_tunes_the_backbone_and_learns(tiny):
    """Kiln's own loop (training.local: the loop a trial runs, in this process), fine-tuning the whole tiny BERT
    (random weights) on texts whose last word decides the label: it learns what the same network with its backbone
    held still (backbone_lr near zero) does not."""
    from pipelines.config import KilnConfig
    from pipelines.training import local

    rng = np.random.default_rng(0)
    good = rng.random(160) < 0.5
    things = ["lamp", "kettle", "chair", "phone"]
    texts = [f"the {rng.choice(things)} bought {rng.integers(1, 60)} days ago is " for _ in good]
    frame = pd.DataFrame(
        {
            "review": [t + ("superb" if g else "dreadful") for t, g in zip(texts, good, strict=True)],
            "label": np.where(good, "p", "n"),
        }
    )

    def val_accuracy(backbone_lr: float) -> float:
        cfg = KilnConfig.model_validate(
            {
                "data": {"source": "unused.csv", "label": "label"},
                "model": {"hidden": [16], "text_encoder": "pretrained", "pretrained": str(tiny)},
                "train": {"epochs": 12, "batch_size": 16, "lr": 1e-2, "finetune": "all", "backbone_lr": backbone_lr},
                "tune": {"num_samples": 1, "search_space": {}},
            }
        )
        fitted = local.fit(cfg, frame)
        assert len(fitted.epochs) == 12
        return fitted.val["val_accuracy"]

    tuned, held = val_accuracy(1e-3), val_accuracy(1e-9)
    assert tuned >= 0.95 and held < tuned - 0.1


def test_kiln_plan_counts_the_fine_tuned_backbones_forward_and_backward(tiny):
    from pipelines.config import KilnConfig
    from pipelines.plan import flops

    cfg = KilnConfig.model_validate({"data": {"source": "unused.csv", "label": "label"}})
    tuned, frozen = fitted(tiny, "all"), fitted(tiny, "frozen")
    with_backbone = flops.count_flops(cfg, tuned.width, 2, slots=tuned.slots)
    head_alone = flops.count_flops(cfg, frozen.width, 2, slots=frozen.slots)
    assert with_backbone["num_params"] > 30522 * 32 > head_alone["num_params"]  # its word embeddings among them
    assert with_backbone["forward_flops_per_sample"] > 3 * head_alone["forward_flops_per_sample"]
    assert with_backbone["backward_flops_per_sample"] > with_backbone["forward_flops_per_sample"]
    assert with_backbone["input_bytes_per_sample"] >= 512 * 8  # the token ids a row carries
