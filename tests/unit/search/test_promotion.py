"""Promotion-based ASHA's rule, against rungs worked out by hand (eta 2: the top half of each rung goes on)."""

import json
import math

from pipelines.search.promotion import CONTINUE, PAUSE, Rungs


def test_a_trial_goes_on_only_once_it_ranks_in_its_rungs_top_half():
    rungs = Rungs([1, 2], eta=2, mode="max")
    assert rungs.on_result("A", 1, 0.5) == PAUSE  # alone at rung 1: top half of 1 is nobody
    assert rungs.on_result("B", 1, 0.7) == CONTINUE  # {B, A}: B is the top 1
    assert rungs.next_promotion({"A"}) is None
    assert rungs.on_result("C", 1, 0.6) == PAUSE  # {B, C, A}: top 1 is B
    assert rungs.on_result("D", 1, 0.9) == CONTINUE  # {D, B, C, A}: top 2 is D, B
    assert rungs.on_result("B", 2, 0.8) == PAUSE  # alone at rung 2
    assert rungs.on_result("D", 2, 0.95) == CONTINUE
    assert rungs.on_result("E", 1, 0.65) == PAUSE  # {D, B, E, C, A}: top 2 still D, B
    assert rungs.on_result("F", 1, 0.1) == PAUSE
    # Six at rung 1: the top 3 are D, B and E; E waits there, so E is promoted next.
    assert rungs.next_promotion({"A", "C", "E", "F", "B"}) == "E"
    assert rungs.next_promotion({"A", "C", "F", "B"}) is None
    assert rungs.promoted == [["B", "D", "E"], ["D"]]


def test_a_paused_trial_is_promoted_when_a_worse_one_arrives_highest_rung_first():
    rungs = Rungs([1, 3], eta=2, mode="min")  # a loss: lower is better
    assert rungs.on_result("A", 1, 0.30) == PAUSE
    assert rungs.on_result("B", 1, 0.50) == PAUSE  # {A, B}: A is the top 1, B is not
    assert rungs.next_promotion({"A", "B"}) == "A"
    assert rungs.on_result("A", 1, 0.30) == CONTINUE  # the restored epoch, reported again on resume
    assert rungs.on_result("A", 2, 0.25) == CONTINUE  # between rungs
    assert rungs.on_result("A", 3, 0.20) == PAUSE
    assert rungs.on_result("C", 1, 0.10) == CONTINUE  # {C, A, B}: top 1 is C
    assert rungs.on_result("C", 3, 0.15) == CONTINUE  # {C, A} at rung 3: C is the top 1
    assert rungs.next_promotion({"A", "B"}) is None


def test_when_nothing_else_can_run_each_rungs_best_goes_on_and_the_rest_stay_stopped():
    rungs = Rungs([1, 2], eta=2, mode="max")
    assert rungs.on_result("A", 1, 0.9) == PAUSE  # the only trial
    assert rungs.next_promotion({"A"}) is None
    assert rungs.next_promotion({"A"}, final=True) == "A"  # a rung nobody has passed promotes its best
    assert rungs.on_result("A", 2, 0.95) == PAUSE
    assert rungs.next_promotion({"A"}, final=True) == "A"
    assert rungs.next_promotion(set(), final=True) is None


def test_a_missing_metric_ranks_last_and_the_records_survive_a_round_trip():
    rungs = Rungs([1], eta=2, mode="max")
    rungs.on_result("A", 1, math.nan)
    assert rungs.on_result("B", 1, 0.1) == CONTINUE
    again = Rungs.from_dict(json.loads(json.dumps(rungs.to_dict())))  # -inf for the missing metric survives JSON
    assert again == rungs and again.rung_at(1) == 0 and again.rung_at(5) is None


def test_trials_level_on_the_metric_go_on_by_the_lower_val_loss_and_old_records_still_load():
    rungs = Rungs([1], eta=2, mode="max")
    assert rungs.on_result("A", 1, 0.98, 0.09) == PAUSE
    assert rungs.on_result("B", 1, 0.98, 0.05) == CONTINUE  # level with A on accuracy, lower loss: B goes on
    assert rungs.on_result("C", 1, 0.98) == PAUSE  # no loss reported ranks last among the level
    assert rungs.on_result("D", 1, 0.97, 0.01) == PAUSE  # a lower loss does not lift it over a better accuracy
    assert rungs.top(0, final=False) == ["B", "A"]
    assert rungs.next_promotion({"A", "C", "D"}) == "A"
    saved = rungs.to_dict()
    del saved["tiebreak"]  # records written before losses were kept
    old = Rungs.from_dict(saved)
    assert old.top(0, final=False) == ["A", "B"]  # level trials fall back to the order they were recorded


def test_brackets_start_judging_later_each_and_share_the_trials_out_in_turn():
    from pipelines.config import load_config
    from pipelines.search.promotion import Brackets
    from pipelines.search.scheduler import bracket_milestones

    cfg = load_config(None, ["tune.scheduler.name=asha_promote", "tune.scheduler.brackets=3", "train.epochs=10"])
    assert bracket_milestones(cfg) == [[1, 2, 4, 8], [2, 4, 8], [4, 8]]
    thirds = load_config(None, ["tune.scheduler.reduction_factor=3", "tune.scheduler.brackets=2", "train.epochs=10"])
    assert bracket_milestones(thirds) == [[1, 3, 9], [3, 9]]
    brackets = Brackets.build(bracket_milestones(cfg), eta=2, mode="max")
    for trial_id in "ABCD":
        brackets.on_result(trial_id, 1, 0.5)
    assert brackets.assigned == {"A": 0, "B": 1, "C": 2, "D": 0}
    assert brackets.on_result("B", 2, 0.5) == PAUSE  # B's bracket first judges at epoch 2
    assert brackets.next_promotion({"A", "B", "D"}) == "A"  # {A, D} at bracket 0's rung 1: A came first
    again = Brackets.from_json(brackets.to_json())
    assert again.assigned == brackets.assigned and again.milestones == brackets.milestones


def test_brackets_that_leave_a_bracket_without_a_rung_are_refused_naming_the_keys():
    import pytest

    from pipelines.config import load_config
    from pipelines.errors import ConfigError

    with pytest.raises(ConfigError) as err:
        load_config(None, ["tune.scheduler.brackets=4", "tune.scheduler.grace_period=2", "train.epochs=10"])
    message = str(err.value)
    assert "tune.scheduler.brackets (4)" in message and "grace_period" in message and "reduction_factor" in message
    assert "epoch 16" in message
