"""A checkpoint's kiln.json decides what is built, and it may come from a shared store: only Kiln's own builders
are built unless the loading config names that very factory (and trusts it, for a registered version)."""

from __future__ import annotations

import json
import sys

import pytest

from pipelines.config import ModelConfig
from pipelines.data import preprocessing
from pipelines.model import checkpoint
from pipelines.model.inference import InferenceModel
from pipelines.model.networks import build_model

FACTORY_MODULE = """
import pathlib
pathlib.Path({marker!r}).write_text("imported")

def factory(input_dim, num_classes, cfg):
    import torch
    return torch.nn.Linear(input_dim, num_classes)

def exits(input_dim, num_classes, cfg):
    raise SystemExit(3)
"""


@pytest.fixture
def saved(tmp_path, monkeypatch):
    """A checkpoint of a linear model over 2 numbers, and an importable module that says when it was imported."""
    marker = tmp_path / "imported"
    (tmp_path / "usercode").mkdir()
    (tmp_path / "usercode" / "kiln_test_factory.py").write_text(FACTORY_MODULE.format(marker=str(marker)))
    monkeypatch.syspath_prepend(str(tmp_path / "usercode"))
    prep = preprocessing.Preprocessing(
        [preprocessing.Encoder("a", "number"), preprocessing.Encoder("b", "number")], [0, 1]
    )
    cfg = ModelConfig(name="kiln_test_factory:factory")
    model = build_model(ModelConfig(name="mlp", hidden=[]), input_dim=2, num_classes=2)[0]  # the same weights
    folder = tmp_path / "ckpt"
    folder.mkdir()
    checkpoint.save(folder, model=model, optimizer=None, model_cfg=cfg, preprocessing=prep, epoch=1, metrics={})
    yield folder, marker
    sys.modules.pop("kiln_test_factory", None)


def rename(folder, name: str) -> None:
    meta = json.loads((folder / checkpoint.META_FILE).read_text())
    meta["model"]["name"] = name
    (folder / checkpoint.META_FILE).write_text(json.dumps(meta))


@pytest.mark.parametrize("name", ["os:system", "kiln_test_factory:factory", "subprocess:run"])
def test_a_name_outside_kilns_builders_is_never_imported_by_default(saved, name):
    folder, marker = saved
    rename(folder, name)
    with pytest.raises(checkpoint.UntrustedModel, match=f"model.name '{name}' is code outside Kiln"):
        InferenceModel(folder)
    assert not marker.exists(), "the factory's module was imported"
    serving = ModelConfig(name="kiln_test_factory:factory")  # names it, but does not trust a registered version
    with pytest.raises(checkpoint.UntrustedModel):
        InferenceModel(folder, factory=checkpoint.trusted_factory(serving))
    assert not marker.exists()


def test_the_factory_the_config_names_and_trusts_is_built(saved):
    folder, marker = saved
    trusted = checkpoint.trusted_factory(ModelConfig(name="kiln_test_factory:factory", trust_code=True))
    model = InferenceModel(folder, factory=trusted)
    assert marker.exists() and model.outputs([[1.0, 2.0]]).shape == (1, 2)
    other = checkpoint.trusted_factory(ModelConfig(name="kiln_test_factory:exits", trust_code=True))
    with pytest.raises(checkpoint.UntrustedModel):
        InferenceModel(folder, factory=other)  # a trusted name is only that name


def test_a_factory_that_exits_is_an_error_not_an_exit(saved):
    folder, _ = saved
    rename(folder, "kiln_test_factory:exits")
    with pytest.raises(ValueError, match="building 'kiln_test_factory:exits' failed: SystemExit"):
        InferenceModel(folder, factory="kiln_test_factory:exits")


def test_a_version_carries_its_factorys_module_and_runs_that_copy_not_the_installed_one(saved, tmp_path):
    """The code a trusted version runs is the code signed with it (the digest covers every file of a version):
    changing or removing the installed module afterwards changes nothing, and a factory only ever installed
    somewhere else still serves."""
    from pipelines.tracking.registry import servable

    folder, marker = saved
    (tmp_path / "staging").mkdir()
    version = servable(str(folder), str(tmp_path / "staging"))
    carried = tmp_path / "staging" / "checkpoint" / checkpoint.FACTORY_FILE
    assert carried.read_text() == (tmp_path / "usercode" / "kiln_test_factory.py").read_text()
    (tmp_path / "usercode" / "kiln_test_factory.py").write_text("raise RuntimeError('the installed copy ran')\n")
    sys.modules.pop("kiln_test_factory", None)
    trusted = checkpoint.trusted_factory(ModelConfig(name="kiln_test_factory:factory", trust_code=True))
    model = InferenceModel(version, factory=trusted)
    assert marker.exists() and model.outputs([[1.0, 2.0]]).shape == (1, 2)
    assert "kiln_test_factory" not in sys.modules  # the installed module was never imported


def test_a_factory_module_that_is_not_a_source_file_cannot_be_registered():
    from pipelines.errors import ConfigError

    with pytest.raises(ConfigError, match="model.name: 'math:sqrt': its module is not a Python source file"):
        checkpoint.factory_source("math:sqrt")  # built into the interpreter
