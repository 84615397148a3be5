"""A trial's best epoch is ranked the way Ray Train keeps checkpoints, so the one Kiln picks still exists."""

import math

import pytest

from pipelines.search.ranking import Candidate, best_epoch, choose_existing, rank


def test_ties_go_to_the_later_epoch_in_either_mode():
    history = [Candidate(1, 0.97, "c1"), Candidate(2, 0.95, "c2"), Candidate(3, 0.97, "c3")]
    assert [c.epoch for c in rank(history, "max")] == [3, 1, 2]
    losses = [Candidate(1, 0.2, "c1"), Candidate(2, 0.1, "c2"), Candidate(3, 0.1, "c3")]
    assert [c.epoch for c in rank(losses, "min")] == [3, 2, 1]


def test_an_epoch_reported_twice_ranks_its_later_report_first():
    # a worker-group restart recomputes an epoch: Ray keeps the later report's checkpoint
    ranked = rank([Candidate(2, 0.9, "first"), Candidate(2, 0.9, "again")], "max")
    assert [c.checkpoint for c in ranked] == ["again", "first"]


def test_nan_ranks_last():
    ranked = rank([Candidate(1, math.nan), Candidate(2, 0.1)], "max")
    assert [c.epoch for c in ranked] == [2, 1]
    assert [c.epoch for c in rank([Candidate(1, math.nan), Candidate(2, 0.1)], "min")] == [2, 1]


def test_best_epoch_of_a_metric_history():
    assert best_epoch([(1, 0.9767), (2, 0.95), (4, 0.9767), (5, 0.9767)], "max") == (5, 0.9767)
    assert best_epoch([], "max") is None


def ray_keeps(reports: list[Candidate], num_to_keep: int) -> set[str]:
    """What Ray Train's checkpoint manager leaves on disk: the top num_to_keep in its order, plus the latest."""
    return {c.checkpoint for c in rank(reports, "max")[:num_to_keep]} | {reports[-1].checkpoint}


@pytest.mark.parametrize("num_to_keep", [1, 2, 3])
def test_the_chosen_checkpoint_is_one_ray_kept(num_to_keep):
    # the breast-cancer run of issue 15: 0.9767 first at epoch 1, again at epochs 4-10
    values = [0.9767, 0.95, 0.96, *[0.9767] * 7]
    reports = [Candidate(epoch, value, f"ckpt-{epoch}") for epoch, value in enumerate(values, start=1)]
    kept = ray_keeps(reports, num_to_keep)
    choice = choose_existing(rank(reports, "max"), lambda path: path in kept)
    assert choice.note is None
    assert choice.chosen.epoch == 10 and choice.chosen.checkpoint in kept


def test_a_missing_best_falls_back_to_the_next_existing_one_and_says_so():
    ranked = rank([Candidate(1, 0.9, "a"), Candidate(2, 0.8, "b"), Candidate(3, 0.7, "c")], "max")
    choice = choose_existing(ranked, lambda path: path == "b")
    assert choice.chosen.epoch == 2
    assert "epoch 1 (0.9000) is missing at a; using epoch 2's (0.8000)" in choice.note


def test_no_checkpoint_left_is_no_choice():
    ranked = rank([Candidate(1, 0.9, "a"), Candidate(2, 0.8, None)], "max")
    assert choose_existing(ranked, lambda path: False).chosen is None


def test_trials_tied_on_the_metric_go_to_the_lower_val_loss_not_the_fewer_epochs():
    """Breast cancer's 86 val rows tie val_accuracy at 0.9767 between a trial stopped after 1 epoch and one
    trained 10: the one-epoch model scored 0.87 on test, the ten-epoch one far better."""
    from types import SimpleNamespace

    import pandas as pd

    from pipelines.config import load_config
    from pipelines.search.tuner import pick_best, summarize

    cfg = load_config(None).for_task("classification")

    def result(trial_id: str, accuracy: list[float], loss: list[float]):
        epochs = list(range(1, len(accuracy) + 1))
        frame = pd.DataFrame(
            {
                "epoch": epochs,
                "val_accuracy": accuracy,
                "val_loss": loss,
                "trial_id": trial_id,
                "checkpoint_path": [f"/ckpt/{trial_id}/{e}" for e in epochs],
            }
        )
        return SimpleNamespace(metrics_dataframe=frame, path=f"/x/run_{trial_id}_0", config={}, error=None)

    short = summarize(result("short", [0.9767], [0.45]), cfg)
    long = summarize(result("long", [0.93, 0.9767, 0.9767], [0.3, 0.12, 0.09]), cfg)
    assert (long.best_epoch, long.best_val_loss) == (3, 0.09)  # Ray's order: the later of tied epochs
    assert pick_best([short, long], "max").trial_id == "long"
    better = summarize(result("better", [0.99], [0.5]), cfg)
    assert pick_best([short, long, better], "max").trial_id == "better"  # the metric itself comes first


def test_a_trial_that_reported_nothing_keeps_its_id_not_a_date_from_its_folder_name():
    from pipelines.search.tuner import trial_id_of

    path = "/runs/ray/s/run_trial_84839_00007_7_model_hidden=128_64,train_lr=0.0001_2026-12-02_01-02-34"
    assert trial_id_of(path) == "84839_00007"
    assert trial_id_of(None) == "?"
