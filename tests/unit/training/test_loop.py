"""Kiln's epoch and validation pass, outside Ray: the loss sums count every row once and training learns."""

import torch

from pipelines.training.batches import InMemory
from pipelines.training.loop import train_epoch, validate


def separable(rows: int = 256) -> InMemory:
    x = torch.randn(rows, 4, generator=torch.Generator().manual_seed(0))
    return InMemory(x, (x[:, 0] > 0).long())


def test_an_epoch_returns_loss_and_row_sums_and_learns():
    torch.manual_seed(0)
    model = torch.nn.Linear(4, 2)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.5)
    data = separable()
    before = validate(model, data, batch_size=64)
    losses = [train_epoch(model, optimizer, data, batch_size=32, seed=epoch, device=torch.device("cpu"),
                          use_amp=False) for epoch in range(5)]
    after = validate(model, data, batch_size=64)
    assert all(loss.dtype == torch.float64 and loss[1] == 256 for loss in losses), "(loss sum, rows)"
    assert losses[-1][0] < losses[0][0]
    assert before[2] == after[2] == 256
    accuracy_before, accuracy_after = float(before[1] / before[2]), float(after[1] / after[2])
    assert accuracy_after > 0.9 and accuracy_after > accuracy_before, (accuracy_before, accuracy_after)
