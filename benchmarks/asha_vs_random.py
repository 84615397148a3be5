"""asha_vs_random: Kiln's search over the same space and seeds with Ray's ASHA (stops trials), with promotion-based
ASHA (tune.scheduler.name: asha_promote, pauses and promotes them) and as random search with every trial run to the
end (FIFO). Reports compute (trial-epochs), the wall time each ASHA needs to reach the best random-search score
minus 0.5 points, and the gap between the bests, for each of several seeds.

    .venv/bin/python benchmarks/asha_vs_random.py [--seeds 3] [--samples 16]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time

from pipelines.cluster import runtime
from pipelines.config import load_config
from pipelines.data import ingest
from pipelines.search import tuner

from common import median, record

ASHAS = ("asha", "asha_promote")
SPACE = {
    "train.lr": {"loguniform": [1e-5, 3e-1]},
    "model.hidden": {"choice": [[32], [128, 64], [256, 128]]},
    "train.batch_size": {"choice": [32, 64, 256]},
}


def results_log():
    """A Tune callback (driver side) that keeps (seconds since start, metric) for every reported epoch."""
    from ray.tune import Callback

    class Log(Callback):
        def __init__(self):
            self.started, self.points = time.perf_counter(), []

        def on_trial_result(self, iteration, trials, trial, result, **info):
            if "val_accuracy" in result:
                self.points.append((time.perf_counter() - self.started, float(result["val_accuracy"])))

    return Log()


def one_search(base: list[str], scheduler: str, seed: int, splits, name: str) -> dict:
    cfg = load_config(
        "configs/quickstart.yaml",
        base + [f"tune.scheduler.name={scheduler}", f"tune.seed={seed}", f"train.seed={seed}"],
    ).for_task("classification")
    log = results_log()
    started = time.perf_counter()
    result = tuner.search(cfg, splits, search_name=name, callbacks=[log])
    return {
        "wall_s": time.perf_counter() - started,
        "trial_epochs": sum(t.epochs_run for t in result.trials),
        "best": result.best.best_metric,
        "points": log.points,
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--samples", type=int, default=16)
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--reduction-factor", type=float, default=None, help="default: the quickstart's")
    parser.add_argument("--asha-only", action="store_true", help="skip the random searches (a quick ASHA probe)")
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as root:
        base = [
            f"storage.root={root}",
            f"tune.num_samples={args.samples}",
            f"train.epochs={args.epochs}",
            "train.num_workers=1",
            f"tune.search_space={json.dumps(SPACE)}",
        ]
        if args.reduction_factor:
            base.append(f"tune.scheduler.reduction_factor={args.reduction_factor}")
        runtime.start(load_config("configs/quickstart.yaml", base))
        splits = ingest.ingest(load_config("configs/quickstart.yaml", base))
        for seed in range(args.seeds):  # interleaved: ASHA, promotion, random, ASHA, ...
            searches = {kind: one_search(base, kind, seed, splits, f"{kind}-{seed}") for kind in ASHAS}
            if args.asha_only:
                print(
                    {
                        "seed": seed,
                        **{f"{k}_trial_epochs": v["trial_epochs"] for k, v in searches.items()},
                        **{f"{k}_best": v["best"] for k, v in searches.items()},
                    },
                    flush=True,
                )
                continue
            full = one_search(base, "fifo", seed, splits, f"random-{seed}")
            goal = full["best"] - 0.005
            row = {
                "seed": seed,
                "random_trial_epochs": full["trial_epochs"],
                "random_best": round(full["best"], 4),
                "random_wall_s": round(full["wall_s"], 1),
            }
            for kind, search in searches.items():
                reached = next((t for t, v in search["points"] if v >= goal), None)
                row.update(
                    {
                        f"{kind}_trial_epochs": search["trial_epochs"],
                        f"{kind}_compute_ratio": round(search["trial_epochs"] / full["trial_epochs"], 3),
                        f"{kind}_best": round(search["best"], 4),
                        f"{kind}_gap_points": round(100 * (full["best"] - search["best"]), 2),
                        f"{kind}_wall_s": round(search["wall_s"], 1),
                        f"{kind}_s_to_goal": None if reached is None else round(reached, 1),
                    }
                )
            rows.append(row)
            print(row, flush=True)
        runtime.stop()
    if args.asha_only:
        return
    baseline = f"random search, {args.samples} trials to {args.epochs} epochs, same seeds"
    gap = "best val accuracy of the random search, same seeds"
    record(
        [
            {
                "name": "asha_compute_ratio",
                "value": median([r["asha_compute_ratio"] for r in rows]),
                "unit": "x",
                "target": 0.35,
                "baseline": f"{baseline} (Ray's ASHAScheduler: stops trials)",
                "detail": rows,
            },
            {
                "name": "asha_best_gap_points",
                "value": max(r["asha_gap_points"] for r in rows),
                "unit": "points (worst seed)",
                "target": 0.5,
                "baseline": gap,
            },
            {
                "name": "asha_promote_compute_ratio",
                "value": median([r["asha_promote_compute_ratio"] for r in rows]),
                "unit": "x",
                "target": 0.35,
                "baseline": f"{baseline} (tune.scheduler.name: asha_promote)",
            },
            {
                "name": "asha_promote_best_gap_points",
                "value": max(r["asha_promote_gap_points"] for r in rows),
                "unit": "points (worst seed)",
                "target": 0.5,
                "baseline": gap,
            },
        ]
    )


if __name__ == "__main__":
    main()
