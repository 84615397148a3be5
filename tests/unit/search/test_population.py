"""tune.scheduler.name: pbt, without Ray running: what it perturbs, and what an exploit restores."""

from __future__ import annotations

import torch
from ray.tune.schedulers import PopulationBasedTraining

from pipelines.config import load_config
from pipelines.search import scheduler
from pipelines.training import recipe
from pipelines.training.loop import _resume

SPACE = (
    'tune.search_space={"train.lr": {"loguniform": [0.0001, 0.01]}, "model.dropout": {"uniform": [0.0, 0.3]}, '
    '"model.hidden": {"choice": [[32], [64]]}}'
)


def test_pbt_perturbs_the_continuous_keys_only_every_interval_epochs():
    cfg = load_config("configs/quickstart.yaml", ["tune.scheduler.name=pbt", "tune.search=random", SPACE])
    built = scheduler.build_scheduler(cfg, "search")
    assert isinstance(built, PopulationBasedTraining)
    assert set(scheduler.mutations(cfg)) == {"train.lr", "model.dropout"}
    assert built._perturbation_interval == cfg.tune.scheduler.perturbation_interval == 2
    assert built._time_attr == "epoch"


class Restored:
    """A checkpoint as Tune hands it back: a folder on disk."""

    def __init__(self, folder):
        self.folder = folder

    def as_directory(self):
        import contextlib

        return contextlib.nullcontext(str(self.folder))


def test_an_exploit_keeps_the_copied_moments_and_epoch_and_takes_this_configs_weight_decay(tmp_path):
    import json

    from pipelines.model import checkpoint

    donor_cfg = load_config("configs/quickstart.yaml", ["train.weight_decay=0.1"]).train
    model = torch.nn.Linear(4, 2)
    donor = recipe.optimizer(model, donor_cfg)
    model(torch.randn(8, 4)).sum().backward()
    donor.step()
    torch.save(model.state_dict(), tmp_path / checkpoint.WEIGHTS_FILE)
    torch.save(donor.state_dict(), tmp_path / checkpoint.OPTIMIZER_FILE)
    (tmp_path / checkpoint.META_FILE).write_text(json.dumps({"epoch": 4, "metrics": {"val_accuracy": 0.9}}))

    mine_cfg = load_config("configs/quickstart.yaml", ["train.weight_decay=0.01"]).train
    copy = torch.nn.Linear(4, 2)
    mine = recipe.optimizer(copy, mine_cfg)
    epoch, metrics = _resume(copy, mine, Restored(tmp_path))

    assert epoch == 4 and metrics["val_accuracy"] == 0.9
    assert torch.equal(copy.weight, model.weight)
    moments = mine.state_dict()["state"][0]["exp_avg"]
    assert torch.equal(moments, donor.state_dict()["state"][0]["exp_avg"])
    assert mine.param_groups[0]["weight_decay"] == 0.01  # this trial's explored value, not the donor's


def test_a_trial_brought_back_by_resume_keeps_its_place_on_pbts_clock(tmp_path):
    """Tune saves no scheduler state: without this, every resumed trial would be perturbed at its next epoch and
    rank as unscored until it reported again."""
    from types import SimpleNamespace

    from ray.tune.experiment import Trial

    cfg = load_config(
        "configs/quickstart.yaml", ["tune.scheduler.name=pbt", "tune.search=random", SPACE, f"storage.root={tmp_path}"]
    )
    built = scheduler.build_scheduler(cfg, "search")
    built.set_search_properties("val_accuracy", "max")
    restored = Trial("kiln_trial", config={"train.lr": 1e-3, "model.dropout": 0.1}, stub=True)
    restored.run_metadata.last_result = {"epoch": 5, "val_accuracy": 0.8}
    fresh = Trial("kiln_trial", config={"train.lr": 1e-3, "model.dropout": 0.1}, stub=True)
    for trial in (restored, fresh):
        built.on_trial_add(SimpleNamespace(search_alg=None), trial)

    state = built._trial_state[restored]
    assert state.last_perturbation_time == 4 and state.last_train_time == 5  # checked at 4: next due at 6
    assert state.last_score == 0.8
    assert built._trial_state[fresh].last_perturbation_time == 0 and built._trial_state[fresh].last_score is None
    assert [scheduler.restored_clock(e, 3) for e in (0, 2, 3, 7)] == [0, 0, 3, 6]


def test_one_config_under_tpe_is_drawn_as_random_would():
    """The quickstart searches with TPE; `tune.search_space: {}` leaves TPE nothing to learn (Ray's OptunaSearch
    would refuse to start)."""
    from ray.tune.search.basic_variant import BasicVariantGenerator

    from pipelines.search.sampler import search_algorithm

    cfg = load_config("configs/quickstart.yaml", ["tune.search_space={}", "tune.num_samples=1"])
    assert cfg.tune.search == "tpe" and isinstance(search_algorithm(cfg, 2), BasicVariantGenerator)
    assert not isinstance(search_algorithm(load_config("configs/quickstart.yaml", [SPACE]), 2), BasicVariantGenerator)
