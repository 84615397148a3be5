import pytest

from pipelines.config import load_config
from pipelines.errors import ConfigError
from pipelines.search.resources import max_concurrent_trials, resolve_use_gpu


def cfg(*overrides):
    return load_config(None, list(overrides))


def test_quickstart_runs_one_trial_at_a_time_on_two_cores():
    assert (
        max_concurrent_trials(cfg("train.num_workers=2", "train.cpus_per_worker=0.5"), cluster_cpus=2, cluster_gpus=0)
        == 1
    )


def test_bigger_clusters_run_more_trials_but_respect_the_cap():
    assert max_concurrent_trials(cfg(), cluster_cpus=8, cluster_gpus=0) == 7
    assert max_concurrent_trials(cfg("tune.max_concurrent_trials=2"), cluster_cpus=8, cluster_gpus=0) == 2


def test_a_trial_that_can_never_fit_fails_at_once_naming_the_keys():
    with pytest.raises(ConfigError) as err:
        max_concurrent_trials(cfg("train.num_workers=8"), cluster_cpus=2, cluster_gpus=0)
    assert "train.num_workers" in str(err.value) and "train.cpus_per_worker" in str(err.value)


def test_gpus():
    assert resolve_use_gpu(cfg(), 0) is False and resolve_use_gpu(cfg(), 2) is True
    with pytest.raises(ConfigError, match="train.use_gpu: true, but the cluster has no GPUs"):
        resolve_use_gpu(cfg("train.use_gpu=true"), 0)
    with pytest.raises(ConfigError, match="need one GPU each"):
        max_concurrent_trials(cfg("train.num_workers=4", "train.use_gpu=true"), cluster_cpus=16, cluster_gpus=2)
    assert max_concurrent_trials(cfg("train.num_workers=2"), cluster_cpus=16, cluster_gpus=4) == 2


def test_only_training_groups_empty_past_the_grace_are_orphaned():
    from pipelines.search.resources import TRIAL_ACTOR_CPU, orphaned_groups

    groups = {
        "train-live": [{"CPU": 0.5}, {"CPU": 0.5}],
        "train-dead": [{"CPU": 0.5}, {"CPU": 0.5}],
        "trial": [{"CPU": TRIAL_ACTOR_CPU}],
    }
    seen: dict[str, float] = {}
    assert orphaned_groups(groups, {"train-live"}, seen, now=0.0, grace_s=60) == []
    assert set(seen) == {"train-dead"}, "a trial actor's group is never a candidate"
    assert orphaned_groups(groups, {"train-live"}, seen, now=59.0, grace_s=60) == []
    assert orphaned_groups(groups, {"train-live"}, seen, now=60.0, grace_s=60) == ["train-dead"]


def test_a_group_that_gets_an_actor_again_starts_its_grace_over():
    from pipelines.search.resources import orphaned_groups

    groups = {"train": [{"CPU": 1.0}]}
    seen: dict[str, float] = {}
    orphaned_groups(groups, set(), seen, now=0.0, grace_s=60)
    orphaned_groups(groups, {"train"}, seen, now=30.0, grace_s=60)  # its workers started
    assert orphaned_groups(groups, set(), seen, now=70.0, grace_s=60) == []
    assert orphaned_groups(groups, set(), seen, now=130.0, grace_s=60) == ["train"]


def test_a_one_worker_trial_trains_in_its_trial_actor_which_holds_the_workers_share():
    from pipelines.search.resources import in_trial_actor, trial_resources

    one = cfg("train.num_workers=1", "train.cpus_per_worker=1")
    assert in_trial_actor(one) and trial_resources(one, use_gpu=False) == {"cpu": 1}
    assert trial_resources(one, use_gpu=True) == {"cpu": 1, "gpu": 1}
    assert max_concurrent_trials(one, cluster_cpus=4, cluster_gpus=0) == 3  # 3.75 CPUs left over Ray Data's share
    ddp = cfg("train.num_workers=2")
    assert not in_trial_actor(ddp) and trial_resources(ddp, use_gpu=True)["cpu"] < 0.1  # Train's workers hold it
    assert not in_trial_actor(cfg("train.num_workers=1", "train.runner=ray_train"))
    searched = cfg("train.num_workers=1", "tune.search_space={train.num_workers: {choice: [1, 2]}}")
    assert not in_trial_actor(searched)  # one trainable's resources serve every trial
