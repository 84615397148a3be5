"""Placement groups left behind by Train runs that died early, removed while a search runs."""

from __future__ import annotations

import threading
import time

from pipelines.search import resources


class OrphanReaper:
    """While a search runs on Kiln's own runtime, remove training placement groups whose Train run died before
    Train's cleaner knew of them (resources.orphaned_groups)."""

    # why: in ~70 trials in one runtime, six such groups held 3 of 2 CPUs and the next trial waited for a
    # worker group forever.

    def __init__(self, interval_s: float = 15.0, grace_s: float = resources.ORPHAN_GRACE_S):
        self.interval_s, self.grace_s, self.removed = interval_s, grace_s, []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="kiln-orphan-reaper")

    def __enter__(self) -> OrphanReaper:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _run(self) -> None:
        seen: dict[str, float] = {}
        while not self._stop.wait(self.interval_s):
            try:
                self.sweep(seen)
            except Exception:  # the state API can time out on a busy machine; try again next time
                continue

    def sweep(self, seen: dict[str, float]) -> list[str]:
        import ray
        from ray.util.placement_group import PlacementGroup, placement_group_table, remove_placement_group
        from ray.util.state import list_actors

        from pipelines.cluster import ray_private

        groups = {
            pg_id: list(info["bundles"].values())
            for pg_id, info in placement_group_table().items()
            if info["state"] == "CREATED"
        }
        # This runtime's dashboard, by address: with other Ray runtimes on the machine the state API would
        # otherwise refuse to guess.
        dashboard = ray_private.dashboard_address()
        actors = list_actors(
            address=f"http://{dashboard}",
            filters=[("state", "!=", "DEAD")],
            detail=True,
            limit=10_000,
            raise_on_missing_output=False,
        )
        occupied = {a.placement_group_id for a in actors if a.placement_group_id}
        orphans = resources.orphaned_groups(groups, occupied, seen, now=time.monotonic(), grace_s=self.grace_s)
        for pg_id in orphans:
            remove_placement_group(PlacementGroup(ray.PlacementGroupID.from_hex(pg_id)))
            seen.pop(pg_id, None)
        self.removed += orphans
        return orphans
