"""scaling: in-loop epoch time of one trial with 1 and 2 DDP workers on a compute-bound model (a wide MLP over
a generated table, large batches so that compute outweighs the all-reduce), interleaved 1 2 1 2.
Efficiency = t1 / (2 * t2): 1.0 is perfect halving.

    .venv/bin/python benchmarks/scaling.py [--pairs 3] [--epochs 4] [--batch-size 2048]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from pipelines.cluster import runtime
from pipelines.config import load_config
from pipelines.data import ingest
from pipelines.training.launch import build_trainer

from common import median, record, write_classification


def epoch_s(cfg, splits, name: str) -> float:
    trainer = build_trainer(
        cfg,
        datasets={"train": splits.train, "val": splits.val},
        preprocessing=splits.preprocessing,
        name=name,
        use_gpu=False,
        arrays=splits.arrays,
    )
    frame = trainer.fit().metrics_dataframe.sort_values("epoch")
    return median(frame["epoch_time_s"].tolist()[1:])  # the first epoch is warm-up


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--pairs", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--rows", type=int, default=30_000)
    parser.add_argument("--batch-size", type=int, default=2048)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as root:
        source = write_classification(Path(root) / "table.parquet", rows=args.rows, features=64)
        base = [
            f"storage.root={root}",
            f"data.source={source}",
            "model.hidden=[512,512]",
            "model.dropout=0",
            f"train.batch_size={args.batch_size}",
            "train.cpus_per_worker=1",
            f"train.epochs={args.epochs}",
            f"train.keep_checkpoints={args.epochs}",
            "tune.num_samples=1",
        ]
        configs = {
            n: load_config("configs/quickstart.yaml", base + [f"train.num_workers={n}"]).for_task("classification")
            for n in (1, 2)
        }
        runtime.start(configs[1])
        splits = ingest.ingest(configs[1])
        times = {1: [], 2: []}
        for pair in range(args.pairs):
            for workers in (1, 2):
                times[workers].append(epoch_s(configs[workers], splits, f"scaling-{workers}-{pair}"))
                print(f"pair {pair}: {workers} worker(s) {times[workers][-1]:.3f} s/epoch", flush=True)
        runtime.stop()
    t1, t2 = median(times[1]), median(times[2])
    record(
        [
            {
                "name": "scaling_efficiency_2w",
                "value": round(t1 / (2 * t2), 3),
                "unit": "fraction of linear",
                "target": 0.8,
                "baseline": "the same trial with 1 worker (1 thread per worker, gloo all-reduce)",
                "detail": {
                    "epoch_s_1w": t1,
                    "epoch_s_2w": t2,
                    "speedup": round(t1 / t2, 3),
                    "pairs": args.pairs,
                    "rows": args.rows,
                    "model": f"mlp [512, 512], batch {args.batch_size}",
                },
            }
        ]
    )


if __name__ == "__main__":
    main()
