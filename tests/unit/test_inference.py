"""Checkpoint -> InferenceModel -> Predictor, with string labels, without Ray or MLflow's registry."""

import numpy as np
import pandas as pd
import pytest
import torch

from pipelines.config import ModelConfig
from pipelines.model.inference import InferenceModel
from pipelines.model.networks import build_model
from serving.predictor import Predictor, RequestError


def test_predictions_are_label_values(trained):
    folder, df = trained
    model = InferenceModel(folder)
    predictions = model.predict(df[model.features].to_numpy())
    assert set(predictions) <= {"high", "low"}
    assert np.mean(np.array(predictions) == df["label"].to_numpy()) > 0.95


def test_frames_by_name_or_position(trained):
    folder, df = trained
    model = InferenceModel(folder)
    shuffled = df[["d", "c", "b", "a"]]
    assert model.predict(model.feature_frame(shuffled)) == model.predict(df[["a", "b", "c", "d"]].to_numpy())
    positional = pd.DataFrame(df[["a", "b", "c", "d"]].to_numpy())
    assert model.predict(model.feature_frame(positional)) == model.predict(df[["a", "b", "c", "d"]].to_numpy())


def test_predictor_accepts_rows_and_objects(trained):
    folder, df = trained
    predictor = Predictor(InferenceModel(folder), name="m", version=3)
    row = df.iloc[0]
    by_list = predictor.predict([[row.a, row.b, row.c, row.d]])
    by_name = predictor.predict([{"d": row.d, "a": row.a, "c": row.c, "b": row.b}])
    assert by_list == by_name == {"predictions": [row.label], "model": "m", "version": 3}


@pytest.mark.parametrize(
    "instances, message",
    [
        ([], "non-empty list"),
        ({"a": 1}, "non-empty list"),
        ([[1, 2, 3]], "instances[0]: expected 4 features, got 3"),
        ([[1, 2, 3, "x"]], "instances[0][3] (d): expected a number, got 'x'"),
        ([[1, 2, 3, True]], "expected a number, got True"),
        ([[1, 2, 3, float("nan")]], "instances[0][3] (d): value must be finite"),
        ([{"a": 1, "b": 2, "c": 3}], "instances[0]: missing feature 'd'"),
        ([{"a": 1, "b": 2, "c": 3, "d": 4, "e": 5}], "instances[0]: unknown feature 'e'"),
        (["1,2,3,4"], "instances[0]: expected a list of 4 numbers"),
    ],
)
def test_bad_requests_are_named(trained, instances, message):
    predictor = Predictor(InferenceModel(trained[0]), name="m", version=1)
    with pytest.raises(RequestError) as err:
        predictor.rows(instances)
    assert message in str(err.value)


def test_models(trained):
    cnn = build_model(ModelConfig(name="cnn", hidden=[4]), input_dim=64, num_classes=10)
    assert cnn(torch.zeros(2, 64)).shape == (2, 10)
    with pytest.raises(ValueError, match="square number"):
        build_model(ModelConfig(name="cnn"), input_dim=10, num_classes=2)
    with pytest.raises(ValueError, match="unknown model 'resnet'"):
        build_model(ModelConfig(name="resnet"), input_dim=10, num_classes=2)
    custom = build_model(ModelConfig(name="test_inference:linear_factory"), input_dim=3, num_classes=2)
    assert isinstance(custom, torch.nn.Linear) and custom.out_features == 2


def linear_factory(input_dim, num_classes, cfg):
    return torch.nn.Linear(input_dim, num_classes)
