"""storage.root as a folder or a URI: which filesystem, what is pruned, what is fetched, what a message shows."""

from __future__ import annotations

import pytest

from pipelines.cluster import storage
from pipelines.config import load_config
from pipelines.errors import ConfigError


def test_a_folder_root_keeps_everything_in_it(tmp_path):
    cfg = load_config(None, [f"storage.root={tmp_path / 'runs'}"])
    assert cfg.storage_root == tmp_path / "runs"
    where = storage.ray_storage(cfg)
    assert where["storage_path"] == str(tmp_path / "runs" / "ray")
    assert storage.local_checkpoint(cfg, "/some/checkpoint") == "/some/checkpoint"


def test_a_uri_root_keeps_local_files_in_local_root(tmp_path):
    cfg = load_config(None, [f"storage.root=file://{tmp_path}/shared", f"storage.local_root={tmp_path / 'here'}"])
    assert cfg.storage_root == tmp_path / "here"
    assert storage.ray_storage(cfg)["storage_path"] == f"{tmp_path}/shared/ray"
    storage.check_reachable(cfg)
    assert (tmp_path / "shared" / "ray").is_dir()


def test_unsupported_schemes_and_uri_local_roots_are_config_errors(tmp_path):
    cfg = load_config(None, ["storage.root=ftp://host/runs"])
    with pytest.raises(ConfigError, match=r"^storage.root: unsupported scheme ftp://"):
        storage.filesystem(cfg)
    with pytest.raises(ConfigError, match="storage.local_root"):
        load_config(None, ["storage.local_root=s3://bucket/x"])


def test_credentials_in_a_uri_never_reach_a_message():
    assert storage.shown("s3://AKIA123:s3cret@bucket/kiln?region=eu-west-1") == "s3://***@bucket/kiln?region=eu-west-1"
    with pytest.raises(ConfigError) as err:
        storage.filesystem(load_config(None, ["storage.root=ftp://user:s3cret@host/runs"]))
    assert "s3cret" not in str(err.value)


def test_pruning_keeps_only_the_winner_and_counts_what_it_freed(tmp_path):
    cfg = load_config(None, [f"storage.root={tmp_path}"])
    for trial, size in (("a", 100), ("b", 250), ("c", 40)):
        folder = tmp_path / "ray" / f"train-{trial}" / "checkpoint_0"
        folder.mkdir(parents=True)
        (folder / "model.pt").write_bytes(b"x" * size)
    assert storage.prune_checkpoints(cfg, {"a": [], "b": [], "c": [], "never-started": []}, keep="b") == 140
    assert [p.name for p in (tmp_path / "ray").iterdir()] == ["train-b"]


def test_pruning_a_search_trained_in_trial_actors_keeps_the_trials_records(tmp_path):
    cfg = load_config(None, [f"storage.root={tmp_path}"])
    trials = {}
    for trial, size in (("a", 100), ("b", 250)):
        folder = tmp_path / "ray" / "search" / f"run_trial_{trial}"
        for n in (1, 2):
            (folder / f"checkpoint_00000{n}").mkdir(parents=True)
            (folder / f"checkpoint_00000{n}" / "model.pt").write_bytes(b"x" * size)
        (folder / "result.json").write_text("{}")
        trials[trial] = [str(folder / "checkpoint_000001"), str(folder / "checkpoint_000002")]
    assert storage.prune_checkpoints(cfg, trials, keep="b") == 200
    assert sorted(p.name for p in (tmp_path / "ray" / "search" / "run_trial_a").iterdir()) == ["result.json"]
    assert len(list((tmp_path / "ray" / "search" / "run_trial_b").iterdir())) == 3


def test_credentials_in_a_uri_never_reach_mlflow_params():
    from pipelines.cluster import storage
    from pipelines.config import load_config
    from pipelines.tracking import mlflow_runs

    cfg = load_config(None, ["storage.root=s3://AKIAKEY:s3cr3t@bucket/kiln", "data.source=s3://AKIAKEY:s3cr3t@b/t.csv"])
    logged = str(mlflow_runs.flatten(storage.masked(cfg.model_dump())))
    assert "s3cr3t" not in logged and "AKIAKEY" not in logged and "s3://***@bucket/kiln" in logged
