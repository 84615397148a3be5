"""train_overhead: in-loop seconds per epoch of Kiln's loop under Ray Train (1 worker) against a bare
PyTorch loop over the same model, data, batch size, thread count and per-epoch validation pass.
Interleaved A B A B. Beside it, in the detail: the Kiln epoch's wall time, report to report as Train's
controller receives them, which adds the checkpoint, the report and its collection.

    .venv/bin/python benchmarks/train_overhead.py [--pairs 3] [--epochs 5]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from pipelines.cluster import runtime
from pipelines.config import load_config
from pipelines.data import ingest
from pipelines.training.launch import build_trainer

from common import bare_training, matrix, median, pin_threads, record, write_teacher_table


def bare_epochs(cfg, x: np.ndarray, y: np.ndarray, val_x: np.ndarray, val_y: np.ndarray, epochs: int) -> list[float]:
    """The same model, batch size and per-epoch validation as Kiln's loop, over in-memory tensors: the floor."""
    return [seconds for seconds, _ in bare_training(cfg, x, y, val_x, val_y, epochs)]


def report_clock(path: Path):
    """A Train callback (it runs in the controller, on this machine) that appends each report's arrival time."""
    import ray.train

    class Clock(ray.train.UserCallback):
        def after_report(self, run_context, metrics, checkpoint) -> None:
            with open(path, "a") as out:
                out.write(f"{time.time()}\n")

    return Clock()


def kiln_epochs(cfg, splits, epochs: int, name: str, folder: str) -> tuple[list[float], list[float]]:
    """(in-loop seconds, wall seconds between successive reports) of each epoch after the first."""
    arrivals = Path(folder) / f"{name}.reports"
    trainer = build_trainer(
        cfg,
        datasets={"train": splits.train, "val": splits.val},
        preprocessing=splits.preprocessing,
        name=name,
        use_gpu=False,
        arrays=splits.arrays,
        callbacks=[report_clock(arrivals)],
    )
    frame = trainer.fit().metrics_dataframe
    times = [float(t) for t in arrivals.read_text().split()]
    return frame.sort_values("epoch")["epoch_time_s"].tolist()[1:epochs], list(np.diff(times))


# The compute-bound workload of search_vs_peers: a wide MLP on 200k generated rows, epochs of seconds.
LARGE = ["model.hidden=[512, 512]", "train.batch_size=512", "data.label=label"]


def one_workload(kind: str, pairs: int, epochs: int) -> dict:
    import ray

    with tempfile.TemporaryDirectory() as root:
        overrides = [
            f"storage.root={root}",
            "train.num_workers=1",
            "train.cpus_per_worker=1",
            f"train.epochs={epochs}",
            f"train.keep_checkpoints={epochs}",
            "tune.num_samples=1",
        ]
        if kind == "large":
            table = write_teacher_table(Path(root) / "teacher.parquet", rows=200_000)
            overrides += [f"data.source={table}", *LARGE]
        cfg = load_config("configs/quickstart.yaml", overrides).for_task("classification")
        runtime.start(cfg)
        splits = ingest.ingest(cfg)
        # The very arrays the Kiln side trains on (copied: the object store's are read-only).
        x, y = (a.copy() for a in matrix(*ray.get(splits.arrays["train"])))
        val_x, val_y = (a.copy() for a in matrix(*ray.get(splits.arrays["val"])))
        bare, kiln, kiln_wall = [], [], []
        for pair in range(pairs):  # the first epoch on each side is warm-up
            bare.append(median(bare_epochs(cfg, x, y, val_x, val_y, epochs)[1:]))
            in_loop, wall = kiln_epochs(cfg, splits, epochs, f"overhead-{kind}-{pair}", root)
            kiln.append(median(in_loop))
            kiln_wall.append(median(wall))
        runtime.stop()
    return {
        "kiln_epoch_s": median(kiln),
        "bare_epoch_s": median(bare),
        "pairs": pairs,
        "epochs": epochs,
        "kiln_wall_epoch_s": median(kiln_wall),
        "wall_ratio": round(median(kiln_wall) / median(bare), 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--pairs", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--workloads", default="small,large", help="small: the quickstart's; large: compute-bound")
    parser.add_argument("--large-pairs", type=int, default=3)
    parser.add_argument("--large-epochs", type=int, default=4, help="the first of each side is warm-up")
    args = parser.parse_args()
    pin_threads(1)
    figures = []
    for kind in args.workloads.split(","):
        pairs, epochs = (args.pairs, args.epochs) if kind == "small" else (args.large_pairs, args.large_epochs)
        detail = one_workload(kind, pairs, epochs)
        figures.append(
            {
                "name": "train_overhead_ratio" + ("_large" if kind == "large" else ""),
                "value": round(detail["kiln_epoch_s"] / detail["bare_epoch_s"], 3),
                "unit": "x",
                "target": 1.05,
                "detail": detail,
                "baseline": "bare PyTorch loop, same model/data/batch/threads/validation"
                + ("; a 512x512 MLP on 200k generated rows" if kind == "large" else ""),
            }
        )
    record(figures)


if __name__ == "__main__":
    main()
