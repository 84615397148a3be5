"""registry.candidates: the choice is made on val alone, every candidate's test metrics are reported, a tie keeps
the network, and without a baseline the network is the only candidate."""

from __future__ import annotations

import re

import numpy as np

from pipelines.model import candidates


def probabilities(truth: np.ndarray, right: np.ndarray) -> np.ndarray:
    """Two-class probabilities that are right (0.8 on the truth) where `right`, else wrong."""
    out = np.full((len(truth), 2), 0.2)
    out[np.arange(len(truth)), np.where(right, truth, 1 - truth)] = 0.8
    return out


def test_the_choice_is_made_on_val_and_the_test_split_only_reports():
    rng = np.random.default_rng(0)
    val_truth, test_truth = rng.integers(0, 2, 200), rng.integers(0, 2, 200)
    val = (probabilities(val_truth, rng.random(200) < 0.7), probabilities(val_truth, rng.random(200) < 0.9), val_truth)
    # on test the network is the better one: it must not matter
    test = (probabilities(test_truth, np.ones(200, bool)), probabilities(test_truth, rng.random(200) < 0.5), test_truth)
    choice = candidates.choose(["network", "baseline"], "classification", "accuracy", val=val, test=test)
    assert choice.winner.name == "baseline"
    assert choice.metrics()["candidate_network_test_accuracy"] == 1.0
    assert {"candidate_baseline_val_accuracy", "candidate_network_val_log_loss"} <= set(choice.metrics())
    assert choice.line().startswith("registered candidate: baseline val_accuracy=0.9")


def test_a_blend_of_models_wrong_on_different_rows_wins_and_says_its_weight():
    rng = np.random.default_rng(1)
    truth = rng.normal(size=400)
    network, trees = truth + rng.normal(size=400), truth + rng.normal(size=400)
    both = (network, trees, truth)
    choice = candidates.choose(["network", "baseline", "blend"], "regression", "rmse", val=both, test=both)
    assert choice.winner.name == "blend" and 0.3 <= choice.winner.weight <= 0.7
    assert "registered candidate: blend (0." in choice.line() and "network" in choice.line()
    assert [c.name for c in choice.runners_up] == ["network", "baseline"]
    assert choice.test_line().startswith("blend (0.") and " test_rmse=" in choice.test_line()
    assert choice.test_line().endswith(f"network {choice.runners_up[0].test['rmse']:.4f}, "
                                       f"baseline {choice.runners_up[1].test['rmse']:.4f}")  # fmt: skip


def test_a_tie_keeps_the_network_and_no_baseline_leaves_it_alone():
    truth = np.array([0, 1, 1, 0])
    same = probabilities(truth, np.ones(4, bool))
    tie = candidates.choose(["baseline", "network"], "classification", "accuracy", val=(same, same, truth),
                            test=(same, same, truth))  # fmt: skip
    assert tie.winner.name == "network"
    alone = candidates.choose(["network", "baseline", "blend"], "classification", "accuracy",
                              val=(same, None, truth), test=(same, None, truth))  # fmt: skip
    assert [c.name for c in alone.candidates] == ["network"] and alone.winner.name == "network"
    assert candidates.task_metric("val_loss", "regression") == "rmse"


def test_a_version_of_the_baseline_or_a_blend_answers_as_registered(trained):
    """A checkpoint folder as registry.servable leaves it when the baseline or a blend won: the endpoint's and
    the pyfunc's InferenceModel answers with the kept baseline, alone or blended, and says which."""
    import json

    import pandas as pd

    from pipelines.model import baseline
    from pipelines.model.inference import BASELINE_FOLDER, InferenceModel

    folder, table = trained
    network = InferenceModel(folder).outputs(table[["a", "b", "c", "d"]])
    types = dict.fromkeys(["a", "b", "c", "d"], "number")
    fitted = baseline.fit(table[list(types)], table["label"].to_numpy(), types, labels=["high", "low"])
    fitted.save(folder / BASELINE_FOLDER)
    meta = json.loads((folder / "kiln.json").read_text())
    rows = table[["a", "b", "c", "d"]].head(20)
    kept = fitted.outputs(rows)
    for candidate, expected in (("baseline", kept), ("blend", 0.3 * network[:20] + 0.7 * kept)):
        (folder / "kiln.json").write_text(json.dumps({**meta, "candidate": {"name": candidate, "weight": 0.3}}))
        model = InferenceModel(folder)
        assert model.candidate == candidate
        assert np.allclose(model.outputs(rows), expected, atol=1e-9)
        assert np.allclose(model.outputs(rows.to_numpy()), expected, atol=1e-9)  # a matrix in feature order
    assert isinstance(model.predict(pd.DataFrame(rows)), list)


def test_a_blend_that_is_all_one_model_registers_that_model_alone():
    """A blend weighted 0 on the network is the baseline (same outputs, twice the serving cost): the baseline
    is registered, and the blend stays in the table."""
    rng = np.random.default_rng(3)
    truth = rng.normal(size=300)
    trees, network = truth + rng.normal(scale=0.1, size=300), truth + rng.normal(scale=3.0, size=300)
    choice = candidates.choose(["network", "baseline", "blend"], "regression", "rmse",
                               val=(network, trees, truth), test=(network, trees, truth))  # fmt: skip
    blended = next(c for c in choice.candidates if c.name == "blend")
    assert blended.weight == 0.0 and blended.val["rmse"] == choice.winner.val["rmse"]
    assert choice.winner.name == "baseline" and choice.line().startswith("registered candidate: baseline")


def test_the_network_alone_is_registered_on_its_test_metrics_with_nothing_to_compare():
    choice = candidates.network_alone({"test_accuracy": 0.97, "test_log_loss": 0.1})
    assert choice.winner.name == "network" and choice.runners_up == []
    assert choice.winner.test == {"accuracy": 0.97, "log_loss": 0.1}
    assert choice.metrics() == {"candidate_network_test_accuracy": 0.97, "candidate_network_test_log_loss": 0.1}


def test_the_candidate_a_kiln_json_names_is_checked_before_it_is_used():
    import pytest

    from pipelines.model.inference import candidate_of

    assert candidate_of({}) == ("network", None)  # every version before candidates
    assert candidate_of({"candidate": {"name": "blend", "weight": 0.35}}) == ("blend", 0.35)
    assert candidate_of({"candidate": {"name": "baseline", "weight": None}}) == ("baseline", None)
    for bad, said in (
        ({"name": "stacker"}, "unknown candidate 'stacker'"),
        ("blend", "unknown candidate None"),
        ({"name": "blend", "weight": "0.5"}, "the blend's weight '0.5' is not a number in [0, 1]"),
        ({"name": "blend", "weight": 1.5}, "the blend's weight 1.5 is not a number in [0, 1]"),
    ):
        with pytest.raises(ValueError, match=re.escape(said)):
            candidate_of({"candidate": bad})
