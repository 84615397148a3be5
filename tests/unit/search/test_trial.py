"""A trial's reports reach Tune from the trial's own thread, every one and in order, also the last one put as
the Train run returns (Ray's own hand-over deadlocked on exactly that one)."""

import queue
import threading
import time

import pytest

from pipelines.search.trial import forward_reports


def test_every_report_is_forwarded_in_order_from_the_calling_thread():
    items, seen = queue.Queue(), []

    def fit():
        for epoch in range(1, 6):
            items.put({"epoch": epoch})
            time.sleep(0.01)
        items.put({"epoch": 6})  # the last report lands as fit returns

    forward_reports(fit, items, lambda item: seen.append((item["epoch"], threading.current_thread())), poll_s=0.05)
    assert [epoch for epoch, _ in seen] == [1, 2, 3, 4, 5, 6]
    assert {thread for _, thread in seen} == {threading.current_thread()}


def test_reports_put_after_the_last_poll_are_drained_before_returning():
    items, seen = queue.Queue(), []

    def fit():
        time.sleep(0.12)  # past a poll that found the queue empty
        for epoch in range(3):
            items.put(epoch)

    forward_reports(fit, items, seen.append, poll_s=0.05)
    assert seen == [0, 1, 2]


def test_the_runs_error_is_raised_after_its_reports():
    items, seen = queue.Queue(), []

    def fit():
        items.put("epoch 1")
        raise RuntimeError("worker group died")

    with pytest.raises(RuntimeError, match="worker group died"):
        forward_reports(fit, items, seen.append, poll_s=0.05)
    assert seen == ["epoch 1"]


def test_a_reports_checkpoint_is_the_train_runs_path_or_the_trials_own_folder():
    import pandas as pd

    from pipelines.search.tuner import checkpoint_paths

    in_actor = pd.DataFrame(
        {"epoch": [1, 2, 3], "checkpoint_dir_name": ["checkpoint_000000", None, "checkpoint_000002"]}
    )
    assert list(checkpoint_paths(in_actor, "/runs/ray/s/run_trial_1/")) == [
        "/runs/ray/s/run_trial_1/checkpoint_000000",
        None,
        "/runs/ray/s/run_trial_1/checkpoint_000002",
    ]
    train_run = pd.DataFrame(
        {"epoch": [1], "checkpoint_path": ["/runs/ray/train-x/checkpoint_0"], "checkpoint_dir_name": [None]}
    )  # Tune saw no checkpoint of its own
    assert list(checkpoint_paths(train_run, "/runs/ray/s/run_trial_1")) == ["/runs/ray/train-x/checkpoint_0"]
    assert list(checkpoint_paths(pd.DataFrame({"epoch": [1]}), None)) == [None]
