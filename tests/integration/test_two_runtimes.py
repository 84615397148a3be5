"""Kiln's runtime beside another Ray instance on the same machine (another `kiln run`, a `ray start` cluster).

Ray Train's placement-group cleaner runs in every Train controller and asks Ray's state API which actors
are alive, finding the dashboard by auto-detecting the Ray instance. With two instances on the machine that
failed ("Found multiple active Ray instances"), the cleaner died, stopped trials' worker groups kept their
CPUs, and a wide search waited for them until its test timed out. Kiln names its own dashboard to every
process it starts; this checks what the cleaner does, from inside one of those processes."""

from __future__ import annotations

import subprocess
import sys

from tests_support import ROOT

OTHER = "import ray, sys; ray.init(num_cpus=1, include_dashboard=False); print('up', flush=True); sys.stdin.read()"


def test_a_ray_process_finds_its_own_runtimes_state_beside_another_instance(tmp_path):
    import ray

    from pipelines.cluster import runtime
    from pipelines.config import load_config

    other = subprocess.Popen(
        [sys.executable, "-c", OTHER], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=ROOT
    )
    try:
        assert other.stdout.readline().strip() == "up", "the other Ray instance did not start"
        runtime.start(load_config(ROOT / "tests/configs/tiny.yaml", [f"storage.root={tmp_path}"]))
        try:

            @ray.remote(num_cpus=0)
            class Named:
                def ready(self) -> bool:
                    return True

            named = Named.options(name="kiln-own-runtime").remote()
            ray.get(named.ready.remote())

            @ray.remote(num_cpus=0)
            def actors_seen_from_a_worker() -> list[str]:
                from ray.util.state import list_actors  # no address: as Ray Train's cleaner calls it

                return [a.name for a in list_actors(filters=[("state", "=", "ALIVE")], raise_on_missing_output=False)]

            assert "kiln-own-runtime" in ray.get(actors_seen_from_a_worker.remote(), timeout=120)
        finally:
            runtime.stop()
    finally:
        other.stdin.close()  # the other driver shuts its instance down and exits
        other.wait(timeout=60)
