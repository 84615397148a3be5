"""trial_cost: what a trial pays outside its epochs, side by side in one run, on the quickstart's search (8 trials,
ASHA), one trial at a time:
- a 1-worker trial trained in its reused Tune trial actor (train.runner: auto),
- the same 1-worker trial as one Ray Train run (train.runner: ray_train),
- a DDP trial of 2 workers (a Ray Train run).
Per trial: (the search stage's wall time - every epoch's measured time) / trials, so actor start, Train's controller
and workers, imports, checkpoints and Tune's bookkeeping all count. `trial_fixed_cost_s` keeps its older meaning
(a DDP trial's start to its first training step, from each trial's MLflow run), next to the floor a fresh process
importing torch and ray.train sets.

    .venv/bin/python benchmarks/trial_cost.py [--set KEY=VALUE ...]
"""

from __future__ import annotations

import argparse
import re
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import median, record

ROOT = Path(__file__).resolve().parent.parent
KILN = ROOT / ".venv" / "bin" / "kiln"
SEARCH = re.compile(r"✓ search\s+([\d.]+) s")
ONE_WORKER = ["train.num_workers=1", "train.cpus_per_worker=1", "tune.max_concurrent_trials=1"]
DDP = ["train.num_workers=2", "train.cpus_per_worker=0.5", "tune.max_concurrent_trials=1"]


def one_search(runner: str, overrides: list[str]) -> dict:
    with tempfile.TemporaryDirectory() as root:
        command = [
            str(KILN),
            "run",
            "configs/quickstart.yaml",
            "--no-serve",
            "--set",
            f"storage.root={root}",
            "--set",
            f"train.runner={runner}",
            "--set",
            f"registry.model_name=trial-cost-{runner}",
            *[a for o in overrides for a in ("--set", o)],
        ]
        out = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
        if out.returncode != 0:
            raise RuntimeError(f"kiln run ({runner}) failed:\n{out.stdout[-3000:]}{out.stderr[-3000:]}")
        search_s = float(SEARCH.search(out.stdout).group(1))
        with sqlite3.connect(Path(root) / "mlflow.db") as db:
            epoch_s = [v for (v,) in db.execute("select value from metrics where key = 'epoch_time_s'")]
            startups = [v for (v,) in db.execute("select value from metrics where key = 'trial_startup_s'")]
            trials = db.execute("select count(*) from tags where key = 'kiln.kind' and value = 'trial'").fetchone()[0]
    return {
        "search_s": search_s,
        "epochs": len(epoch_s),
        "epoch_s_total": sum(epoch_s),
        "trials": trials,
        "fixed_cost_s": (search_s - sum(epoch_s)) / trials,
        "startup_s": median(startups),
    }


def import_floor_s() -> float:
    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", "import torch, ray.train"], check=True)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--set", action="append", default=[], help="a config override, as for kiln run")
    args = parser.parse_args()
    floor = import_floor_s()
    in_actor = one_search("auto", [*ONE_WORKER, *args.set])
    train_run = one_search("ray_train", [*ONE_WORKER, *args.set])
    ddp = one_search("ray_train", [*DDP, *args.set])
    for name, run in (
        ("1 worker, in its trial actor", in_actor),
        ("1 worker, a Ray Train run", train_run),
        ("2 DDP workers, a Ray Train run", ddp),
    ):
        print(
            f"{name}: search {run['search_s']:.1f} s, {run['trials']} trials, {run['epochs']} epochs "
            f"({run['epoch_s_total']:.1f} s), {run['fixed_cost_s']:.2f} s a trial outside its epochs"
        )
    record(
        [
            {
                "name": "trial_fixed_cost_1w_s",
                "value": round(in_actor["fixed_cost_s"], 2),
                "unit": "s",
                "target": 3,
                "baseline": "the same search as one Ray Train run per trial: "
                f"{train_run['fixed_cost_s']:.2f} s a trial",
                "detail": {
                    "in_trial_actor": in_actor,
                    "ray_train": train_run,
                    "ratio": round(in_actor["fixed_cost_s"] / train_run["fixed_cost_s"], 3),
                },
            },
            {
                "name": "trial_fixed_cost_s",
                "value": round(ddp["startup_s"], 2),
                "unit": "s",
                "target": 6,
                "baseline": f"floor: a fresh process imports torch + ray.train in {floor:.2f} s",
                "detail": {
                    "ratio_to_floor": round(ddp["startup_s"] / floor, 2),
                    "ddp": ddp,
                    "outside_epochs_s": round(ddp["fixed_cost_s"], 2),
                },
            },
        ]
    )


if __name__ == "__main__":
    main()
