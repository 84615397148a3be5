"""A training placement group whose Train run is gone is removed and its CPUs come back; one in use stays,
and so does Tune's trial-actor group."""

from __future__ import annotations

import time


def test_the_reaper_frees_an_orphaned_worker_group_and_nothing_else():
    import ray
    from ray.util.placement_group import placement_group, placement_group_table
    from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

    from pipelines.search.reaper import OrphanReaper
    from pipelines.search.resources import TRIAL_ACTOR_CPU

    ray.init(address="local", num_cpus=2, include_dashboard=True, dashboard_host="127.0.0.1", logging_level="error")
    try:
        orphan = placement_group([{"CPU": 0.5}, {"CPU": 0.5}])  # what a killed Train run leaves behind
        in_use = placement_group([{"CPU": 0.5}])
        trial = placement_group([{"CPU": TRIAL_ACTOR_CPU}])
        ray.get([orphan.ready(), in_use.ready(), trial.ready()])

        @ray.remote(num_cpus=0.5)
        class Worker:
            def ping(self) -> str:
                return "ok"

        worker = Worker.options(scheduling_strategy=PlacementGroupSchedulingStrategy(in_use)).remote()
        assert ray.get(worker.ping.remote()) == "ok"
        free_before = ray.available_resources().get("CPU", 0)

        reaper, seen = OrphanReaper(grace_s=0), {}
        deadline = time.monotonic() + 60
        while not reaper.removed and time.monotonic() < deadline:  # the state API may lag a moment
            reaper.sweep(seen)
            time.sleep(1)
        assert reaper.removed == [orphan.id.hex()]
        states = {pg_id: info["state"] for pg_id, info in placement_group_table().items()}
        assert states[orphan.id.hex()] == "REMOVED"
        assert states[in_use.id.hex()] == states[trial.id.hex()] == "CREATED"
        deadline = time.monotonic() + 30
        while ray.available_resources().get("CPU", 0) < free_before + 1.0 and time.monotonic() < deadline:
            time.sleep(0.5)
        assert ray.available_resources().get("CPU", 0) >= free_before + 1.0, "the orphan's CPUs came back"
        assert ray.get(worker.ping.remote()) == "ok"
    finally:
        ray.shutdown()
