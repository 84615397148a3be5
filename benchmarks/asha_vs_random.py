"""asha_vs_random: Kiln's search over the same space and seeds, once with ASHA and once as random search with
every trial run to the end (FIFO). Reports compute (trial-epochs), the wall time ASHA needs to reach the best
random-search score minus 0.5 points, and the gap between the two bests, for each of several seeds.

    .venv/bin/python benchmarks/asha_vs_random.py [--seeds 3] [--samples 16]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time

from pipelines import ingest, runtime
from pipelines.config import load_config
from pipelines.search import tuner

from common import median, record

SPACE = {"train.lr": {"loguniform": [1e-5, 3e-1]}, "model.hidden": {"choice": [[32], [128, 64], [256, 128]]},
         "train.batch_size": {"choice": [32, 64, 256]}}


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
    cfg = load_config("configs/quickstart.yaml", base + [f"tune.scheduler.name={scheduler}", f"tune.seed={seed}",
                                                         f"train.seed={seed}"]).for_task("classification")
    log = results_log()
    started = time.perf_counter()
    result = tuner.search(cfg, splits, search_name=name, callbacks=[log])
    return {"wall_s": time.perf_counter() - started, "trial_epochs": sum(t.epochs_run for t in result.trials),
            "best": result.best.best_metric, "points": log.points}


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
        base = [f"storage.root={root}", f"tune.num_samples={args.samples}", f"train.epochs={args.epochs}",
                "train.num_workers=1", f"tune.search_space={json.dumps(SPACE)}"]
        if args.reduction_factor:
            base.append(f"tune.scheduler.reduction_factor={args.reduction_factor}")
        runtime.start(load_config("configs/quickstart.yaml", base))
        splits = ingest.ingest(load_config("configs/quickstart.yaml", base))
        for seed in range(args.seeds):  # interleaved: ASHA, random, ASHA, random, ...
            asha = one_search(base, "asha", seed, splits, f"asha-{seed}")
            if args.asha_only:
                print({"seed": seed, "asha_trial_epochs": asha["trial_epochs"], "asha_best": asha["best"],
                       "asha_wall_s": round(asha["wall_s"], 1)}, flush=True)
                continue
            full = one_search(base, "fifo", seed, splits, f"random-{seed}")
            goal = full["best"] - 0.005
            reached = next((t for t, v in asha["points"] if v >= goal), None)
            rows.append({"seed": seed, "asha_trial_epochs": asha["trial_epochs"],
                         "random_trial_epochs": full["trial_epochs"],
                         "compute_ratio": round(asha["trial_epochs"] / full["trial_epochs"], 3),
                         "asha_best": round(asha["best"], 4), "random_best": round(full["best"], 4),
                         "gap_points": round(100 * (full["best"] - asha["best"]), 2),
                         "asha_wall_s": round(asha["wall_s"], 1), "random_wall_s": round(full["wall_s"], 1),
                         "asha_s_to_goal": None if reached is None else round(reached, 1)})
            print(rows[-1], flush=True)
        runtime.stop()
    if args.asha_only:
        return
    record([
        {"name": "asha_compute_ratio", "value": median([r["compute_ratio"] for r in rows]), "unit": "x",
         "target": 0.35, "baseline": f"random search, {args.samples} trials to {args.epochs} epochs, same seeds",
         "detail": rows},
        {"name": "asha_best_gap_points", "value": max(r["gap_points"] for r in rows), "unit": "points (worst seed)",
         "target": 0.5, "baseline": "best val accuracy of the random search, same seeds"},
    ])


if __name__ == "__main__":
    main()
