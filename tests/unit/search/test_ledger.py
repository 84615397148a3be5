"""The search ledger: what `kiln run --resume` continues, kept beside Tune's state under storage.root."""

from pathlib import Path

import pytest

from pipelines.config import load_config
from pipelines.search import ledger


@pytest.mark.parametrize("scheme", ["", "file://"])
def test_the_search_ledger_lives_under_storage_root_and_keeps_the_latest(tmp_path, scheme):
    cfg = load_config(
        None, [f"storage.root={scheme}{tmp_path}/shared", f"storage.local_root={tmp_path / 'here'}", "name=ledger"]
    )
    old = ledger.new(cfg, "run-a", "ledger-20261202-101010")
    ledger.save(cfg, old)
    newer = ledger.SearchState("ledger-20261202-101010-2", old.config_hash, "run-b", ledger.RUNNING, old.started + 5)
    ledger.save(cfg, newer)
    ledger.save(cfg, newer.with_status(ledger.INTERRUPTED))
    (tmp_path / "shared" / "searches" / "ledger-20261202-101011.json.tmp").write_text("{half a fi")  # cut short
    assert ledger.latest(cfg) == newer.with_status(ledger.INTERRUPTED)
    assert sorted(p.name for p in (tmp_path / "shared" / "searches").glob("*.json")) == [
        "ledger-20261202-101010-2.json",
        "ledger-20261202-101010.json",
    ]
    assert not (tmp_path / "here" / "searches").exists()


def test_latest_matches_the_config_name_exactly(tmp_path):
    digits = load_config(None, [f"storage.root={tmp_path}", "name=digits"])
    cnn = load_config(None, [f"storage.root={tmp_path}", "name=digits-cnn"])
    ledger.save(cnn, ledger.new(cnn, "run-cnn", "digits-cnn-20261202-101010"))
    assert ledger.latest(digits) is None  # digits-cnn's search is not digits'
    ledger.save(digits, ledger.new(digits, "run-digits", "digits-20261202-090000"))
    assert ledger.latest(digits).parent_run_id == "run-digits"
    assert ledger.latest(cnn).parent_run_id == "run-cnn"


def test_two_searches_started_in_the_same_second_get_different_names(tmp_path, monkeypatch):
    cfg = load_config(None, [f"storage.root={tmp_path}", "name=same"])
    monkeypatch.setattr(ledger.time, "strftime", lambda _: "20261202-101010")
    first = ledger.fresh_name(cfg)
    ledger.save(cfg, ledger.new(cfg, "run-1", first))
    second = ledger.fresh_name(cfg)
    assert (first, second) == ("same-20261202-101010", "same-20261202-101010-2")


def test_a_running_search_is_leased_to_its_live_process():
    import os
    import subprocess
    import sys

    cfg = load_config(None, ["name=lease"])
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        state = ledger.new(cfg, "run", "lease-20261202-101010")
        held = ledger.SearchState(
            **{**state.__dict__, "pid": child.pid, "pid_started": ledger.process_started(child.pid)}
        )
        assert held.holder_alive() and not held.with_status(ledger.INTERRUPTED).holder_alive()
        assert not state.holder_alive()  # this process: a resume of its own search is not refused
        assert not ledger.SearchState(**{**state.__dict__, "host": "elsewhere", "pid": child.pid}).holder_alive()
    finally:
        child.kill()
        child.wait()
    assert not held.holder_alive()  # the driver died (a hard kill): the search may be resumed
    assert held.leased_here().pid == os.getpid()


def test_a_search_whose_later_stage_failed_can_be_resumed_but_not_one_that_failed_searching():
    cfg = load_config(None, ["name=late"])
    state = ledger.new(cfg, "run", "late-20261202-101010")
    assert ledger.unfinished(state) and ledger.unfinished(state.with_status(ledger.INTERRUPTED))
    assert not ledger.unfinished(state.with_status(ledger.FAILED))  # the search itself failed
    assert ledger.unfinished(state.with_search_done().with_status(ledger.FAILED))  # evaluate or register failed
    assert not ledger.unfinished(state.with_search_done().with_status(ledger.FINISHED))


def test_two_runs_that_pick_a_name_before_either_saves_still_get_different_names(tmp_path, monkeypatch):
    cfg = load_config(None, [f"storage.root={tmp_path}", "name=race"])
    monkeypatch.setattr(ledger.time, "strftime", lambda _: "20261202-101010")
    first, second = ledger.fresh_name(cfg), ledger.fresh_name(cfg)  # nothing saved in between
    assert (first, second) == ("race-20261202-101010", "race-20261202-101010-2")
    assert ledger.latest(cfg) is None  # a claimed name not yet written is no search


def test_a_lease_whose_pid_now_names_another_process_does_not_hold_the_search():
    import subprocess
    import sys

    cfg = load_config(None, ["name=reuse"])
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        state = ledger.new(cfg, "run", "reuse-20261202-101010")
        started = ledger.process_started(child.pid)
        assert started
        assert ledger.SearchState(**{**state.__dict__, "pid": child.pid, "pid_started": started}).holder_alive()
        reused = ledger.SearchState(**{**state.__dict__, "pid": child.pid, "pid_started": str(int(started) - 1)})
        assert not reused.holder_alive()  # same pid, another process: the driver that held it is gone
    finally:
        child.kill()
        child.wait()


def test_a_search_is_held_by_one_live_process_and_freed_when_it_dies(tmp_path):
    import subprocess
    import sys

    cfg = load_config(None, [f"storage.root={tmp_path}", "name=held"])
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time\nfrom pipelines.config import load_config\n"
            "from pipelines.search import ledger\n"
            f"hold = ledger.hold(load_config(None, ['storage.root={tmp_path}', 'name=held']), 'held-1')\n"
            "print('held', flush=True); time.sleep(60)",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(ledger.ConfigError, match="search held-1 is held by another live kiln process"):
            ledger.hold(cfg, "held-1")
        ledger.hold(cfg, "held-2").release()  # another search is free
    finally:
        holder.kill()  # SIGKILL: no chance to release; the kernel does
        holder.wait()
    mine = ledger.hold(cfg, "held-1")
    with pytest.raises(ledger.ConfigError):
        ledger.hold(cfg, "held-1")  # held by this process now, even against itself
    mine.release()
    ledger.hold(cfg, "held-1").release()


# The training recipe before its keys existed: a search saved then resumes only under it.
OLD_RECIPE = [
    "train.weight_decay=0",
    "train.schedule=constant",
    "train.warmup_fraction=0",
    "train.grad_clip=0",
    "train.label_smoothing=0",
    "data.char_ngrams=0",
    "model.image_pool=1",
    "data.max_length=64",
    "data.numbers=standard",
    "data.categories=onehot",
    "model.text_wide=false",
]


def test_a_config_hashes_as_it_did_before_model_columns_existed():
    """--resume compares this hash: a search started before an upgrade must stay resumable after it when it still
    trains the same way. These values are what the version before model.columns computed; a new config key at
    the value that trains as before must keep them, and the new recipe's defaults must not."""
    assert ledger.config_hash(load_config(None, ["name=hash", *OLD_RECIPE])) == "8de0f4511f458552"
    quickstart = Path(__file__).parents[3] / "configs" / "quickstart.yaml"
    old_space = (
        "tune.search_space={train.lr: {loguniform: [1.0e-4, 1.0e-2]}, model.hidden: {choice: [[64], [128, 64]]}}"
    )
    # the quickstart searched at random then (tune.search: tpe since session 23 changes the hash, as it should)
    old_quickstart = [*OLD_RECIPE, old_space, "tune.search=random"]
    assert ledger.config_hash(load_config(quickstart, old_quickstart)) == "c4c6d200223da96b"
    columns = "model.columns.note={text_encoder: transformer, embedding_dim: 16}"  # as hashed before pretrained
    assert ledger.config_hash(load_config(None, ["name=h", columns])) == "43791ac4318e7bf2"
    for changed in (
        "model.columns.note.embedding_dim=8",
        "data.tokenizer=bpe",
        "train.schedule=cosine",
        "tune.scheduler.perturbation_interval=3",
        "model.pooling=cls",
    ):
        assert ledger.config_hash(load_config(None, ["name=hash", *OLD_RECIPE, changed])) != "8de0f4511f458552"
    assert ledger.config_hash(load_config(None, ["name=hash"])) != "8de0f4511f458552"
