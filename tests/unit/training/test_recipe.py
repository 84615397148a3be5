"""The training recipe: AdamW's groups, the warm-up and cosine schedule (continued after a promotion or resume),
clipping and batch-norm statistics re-estimated before evaluation."""

import pytest
import torch
from torch import nn

from pipelines.config import TrainConfig
from pipelines.errors import ConfigError
from pipelines.model.networks import reads_batches
from pipelines.training import recipe
from pipelines.training.batches import InMemory
from pipelines.training.loop import loss_function, train_epoch


def test_warm_up_rises_linearly_then_the_cosine_reaches_zero_at_the_last_step():
    lrs = [recipe.lr_at(step, base_lr=1.0, total=100, warmup_fraction=0.1, schedule="cosine") for step in range(100)]
    assert lrs[:10] == pytest.approx([(i + 1) / 10 for i in range(10)])
    assert lrs[10] == pytest.approx(1.0)
    assert all(a >= b for a, b in zip(lrs[10:], lrs[11:], strict=False)), "decays monotonically"
    assert lrs[55] == pytest.approx(0.5, abs=0.02), "half way through the decay: half the rate"
    assert lrs[-1] < 0.001
    constant = [recipe.lr_at(s, base_lr=2.0, total=100, warmup_fraction=0.0, schedule="constant") for s in range(100)]
    assert set(constant) == {2.0}


def test_a_resumed_or_promoted_trial_continues_its_schedule_instead_of_warming_up_again():
    cfg = TrainConfig(epochs=10, lr=0.1, warmup_fraction=0.2)
    model = nn.Linear(2, 2)
    whole = recipe.Schedule(recipe.optimizer(model, cfg), cfg, steps_per_epoch=7)
    seen = []
    for _ in range(70):
        seen.append(whole.lr)
        whole.before_step()
    resumed = recipe.Schedule(recipe.optimizer(model, cfg), cfg, steps_per_epoch=7, start_epoch=4)
    assert resumed.lr == pytest.approx(seen[28]) and resumed.lr > 0.05
    resumed.before_step()
    assert resumed.optimizer.param_groups[0]["lr"] == pytest.approx(seen[28])


def test_weight_decay_skips_biases_and_norms():
    model = nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.Embedding(10, 4))
    groups = recipe.optimizer(model, TrainConfig(weight_decay=0.05)).param_groups
    decayed = {id(p) for p in groups[0]["params"]}
    assert groups[0]["weight_decay"] == 0.05 and groups[1]["weight_decay"] == 0.0
    assert decayed == {id(model[0].weight), id(model[2].weight)}


def test_clipping_bounds_the_step_and_label_smoothing_only_touches_the_training_loss():
    torch.manual_seed(0)
    x = torch.randn(64, 3) * 1000
    data = InMemory({"x": x}, (x[:, 0] > 0).long())
    steps = {}
    for clip in (0.0, 0.01):
        model = reads_batches(nn.Linear(3, 2))
        before = [p.detach().clone() for p in model.parameters()]
        optimizer = torch.optim.SGD(model.parameters(), lr=1.0)
        train_epoch(model, optimizer, data, batch_size=64, seed=0, device=torch.device("cpu"), grad_clip=clip)
        steps[clip] = sum(float((p - b).norm() ** 2) for p, b in zip(model.parameters(), before, strict=True)) ** 0.5
    assert steps[0.01] == pytest.approx(0.01, rel=1e-3) and steps[0.0] > 1
    logits, y = torch.tensor([[10.0, -10.0]]), torch.tensor([0])
    assert loss_function("auto", "classification", label_smoothing=0.1)(logits, y) > 0.5
    assert loss_function("auto", "classification")(logits, y) < 1e-6


def test_batch_norm_statistics_are_re_estimated_from_the_current_weights():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(2, 4), nn.BatchNorm1d(4))
    batches = [torch.randn(32, 2) * 3 + 5 for _ in range(4)]
    recipe.recalibrate_batch_norm(model.eval(), iter(batches))
    hidden = model[0](torch.cat(batches)).detach()
    assert torch.allclose(model[1].running_mean, hidden.mean(0), atol=1e-4)
    assert not model.training, "the mode it had"
    assert model[1].momentum == 0.1


@pytest.mark.parametrize(
    "override, key",
    [
        ("train.warmup_fraction=1.5", "train.warmup_fraction"),
        ("train.weight_decay=-0.1", "train.weight_decay"),
        ("train.label_smoothing=1", "train.label_smoothing"),
        ("train.grad_clip=-1", "train.grad_clip"),
    ],
)
def test_a_recipe_value_out_of_range_is_refused_naming_the_key(override, key):
    from pipelines.config import load_config

    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        load_config(None, [override])
