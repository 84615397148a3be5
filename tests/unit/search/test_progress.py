from types import SimpleNamespace

from pipelines.search.progress import progress_callback


def trial(trial_id, lr):
    return SimpleNamespace(trial_id=trial_id, config={"train.lr": lr})


def drive(progress):
    a, b = trial("t_00000", 0.01), trial("t_00001", 1e-5)
    progress.on_trial_start(0, [], a)
    progress.on_trial_result(0, [], a, {"val_accuracy": 0.9, "epoch": 1})
    progress.on_trial_result(0, [], a, {"val_accuracy": 0.95, "epoch": 2})
    progress.on_trial_complete(0, [], a)
    progress.on_trial_start(0, [], b)
    progress.on_trial_result(0, [], b, {"val_accuracy": 0.1, "epoch": 1})
    progress.on_trial_complete(0, [], b)


def test_one_line_per_event_outside_a_terminal(capsys):
    drive(progress_callback("val_accuracy", "max", 2, 2, live=False))
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 7
    assert lines[0].endswith("trial t_00000 started (1/2): train.lr=0.01")
    assert lines[3].endswith("trial t_00000 finished 2 epochs")
    assert lines[6].endswith("trial t_00001 stopped early by the scheduler after 1 epochs")


def test_live_panel_tracks_best_and_counts():
    progress = progress_callback("val_accuracy", "max", 3, 2, live=True)
    drive(progress)
    from rich.console import Console

    console = Console(record=True, width=120)
    console.print(progress._panel())
    text = console.export_text()
    assert "0 running, 0 paused, 2 finished (1 stopped early), 0 failed, of 3" in text
    assert "0.9500  (t_00000: train.lr=0.01)" in text
    assert "to go" in text
    progress.on_experiment_end([])


def test_progress_survives_tunes_pickling():
    import cloudpickle

    progress = progress_callback("val_accuracy", "max", 2, 2, live=True)
    drive(progress)
    restored = cloudpickle.loads(cloudpickle.dumps(progress))
    restored.on_trial_start(0, [], trial("t_00002", 0.1))
    assert restored.done == 2
    restored.on_experiment_end([])
    progress.on_experiment_end([])


def test_a_paused_trial_gets_one_line_then_its_promotion(capsys):
    progress = progress_callback("val_accuracy", "max", 2, 4, live=False)
    a = trial("t_00000", 0.01)
    progress.on_trial_start(0, [], a)
    progress.on_trial_result(0, [], a, {"val_accuracy": 0.9, "epoch": 1})
    a.status = "PAUSED"
    progress.on_step_end(0, [a])
    progress.on_step_end(1, [a])  # still paused: no second line
    a.status = "RUNNING"
    progress.on_trial_start(2, [a], a)
    lines = capsys.readouterr().out.splitlines()
    assert [line.split("] ", 1)[1] for line in lines[2:]] == [
        "trial t_00000 paused after epoch 1: resumes if it ranks in its rung's top",
        "trial t_00000 promoted: resumes after epoch 1",
    ]
