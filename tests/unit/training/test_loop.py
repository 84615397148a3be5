"""Kiln's epoch and validation pass, outside Ray: the loss sums count every row once, training learns, and the
val metrics are the task's, in the label's units."""

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.metrics import mean_squared_error

from pipelines.data.preprocessing import Encoder, Preprocessing
from pipelines.model.networks import reads_batches
from pipelines.training.batches import InMemory
from pipelines.training.loop import loss_function, train_epoch, val_metrics, validate


def separable(rows: int = 256) -> InMemory:
    x = torch.randn(rows, 4, generator=torch.Generator().manual_seed(0))
    return InMemory({"x": x}, (x[:, 0] > 0).long())


def test_an_epoch_returns_loss_and_row_sums_and_learns():
    torch.manual_seed(0)
    model = reads_batches(torch.nn.Linear(4, 2))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.5)
    data = separable()
    prep = Preprocessing([Encoder(f"f{i}", "number") for i in range(4)], labels=[0, 1])
    before = val_metrics(*validate(model, data, batch_size=64), prep, loss_function("auto", "classification"))
    losses = [
        train_epoch(model, optimizer, data, batch_size=32, seed=epoch, device=torch.device("cpu"), amp=None)
        for epoch in range(5)
    ]
    outputs, targets = validate(model, data, batch_size=64)
    after = val_metrics(outputs, targets, prep, loss_function("auto", "classification"))
    assert all(loss.dtype == torch.float64 and loss[1] == 256 for loss in losses), "(loss sum, rows)"
    assert losses[-1][0] < losses[0][0]
    assert len(targets) == 256
    assert after["val_accuracy"] > 0.9 and after["val_accuracy"] > before["val_accuracy"], (before, after)
    assert after["val_loss"] < before["val_loss"] and after["val_auc"] > 0.95
    assert set(after) == {"val_loss", "val_accuracy", "val_f1_macro", "val_log_loss", "val_auc"}


def test_regression_learns_a_standardised_target_and_reports_rmse_in_the_labels_units():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(512, 3)).astype(np.float32)
    price = 1000 + 300 * x[:, 0] - 100 * x[:, 1]
    prep = Preprocessing(
        [Encoder(f"f{i}", "number") for i in range(3)], [], "regression", float(price.mean()), float(price.std())
    )
    data = InMemory.from_arrays(({"x": x}, prep.encode(pd.Series(price))), torch.device("cpu"))
    assert data.y.dtype == torch.float32
    torch.manual_seed(0)
    model = reads_batches(torch.nn.Linear(3, 1))
    optimizer = torch.optim.Adam(model.parameters(), lr=0.05)
    loss_fn = loss_function("auto", "regression")
    for epoch in range(30):
        train_epoch(
            model, optimizer, data, batch_size=64, seed=epoch, device=torch.device("cpu"), amp=None, loss_fn=loss_fn
        )
    outputs, targets = validate(model, data, batch_size=128)
    scores = val_metrics(outputs, targets, prep, loss_fn)
    predicted = prep.decode(outputs.numpy())
    assert abs(scores["val_rmse"] - mean_squared_error(price, predicted) ** 0.5) < 1e-3
    assert scores["val_rmse"] < 10 and scores["val_r2"] > 0.99, scores
    huber = loss_function("huber", "regression")(outputs, targets)
    assert float(huber) <= scores["val_loss"] + 1e-6  # Huber is half the squared error below 1, linear above


def test_precision_auto_is_fp32_on_the_cpu_and_fp16_needs_a_gpu():
    from pipelines.training.loop import autocast_dtype

    cpu = torch.device("cpu")
    assert autocast_dtype("auto", cpu) is None and autocast_dtype("fp32", cpu) is None
    assert autocast_dtype("bf16", cpu) == torch.bfloat16
    with pytest.raises(ValueError, match="fp16 needs a GPU"):
        autocast_dtype("fp16", cpu)


def test_a_bf16_epoch_on_the_cpu_still_learns():
    torch.manual_seed(0)
    x = torch.randn(512, 8)
    y = (x[:, 0] > 0).long()
    data = InMemory.from_arrays(({"x": x.numpy()}, y.numpy()), torch.device("cpu"))
    model = reads_batches(torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU(), torch.nn.Linear(16, 2)))
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    losses = [
        train_epoch(model, optimizer, data, batch_size=32, seed=e, device=torch.device("cpu"), amp=torch.bfloat16)
        for e in range(4)
    ]
    assert losses[-1][0] / losses[-1][1] < 0.5 * losses[0][0] / losses[0][1]
