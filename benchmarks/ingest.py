"""ingest: data-stall fraction of Kiln's streaming Ray Data path, 1 - (training throughput reading the train
shard through Kiln's Ray Data iterator / throughput on one pinned in-memory batch reused), measured in the
same Ray Train worker, interleaved A B A B, on a generated table of at least 1 million rows read from parquet
by Kiln's ingest, with a model heavy enough to be compute-bound. Also reports the object store's peak use.

    .venv/bin/python benchmarks/ingest.py [--rows 1000000] [--pairs 3]
"""

from __future__ import annotations

import argparse
import json
import re
import tempfile
import threading
import time
from pathlib import Path

from pipelines.cluster import runtime
from pipelines.config import load_config
from pipelines.data import ingest

from common import median, record, write_classification

PLASMA = re.compile(r"Plasma memory usage (\d+) MiB")


def stall_loop(config: dict) -> None:
    """One worker: epochs through Kiln's streaming iterator, then as many steps on one pinned batch."""
    import ray.train
    import torch
    import torch.nn.functional as F

    from pipelines.model.networks import mlp, reads_batches
    from pipelines.training.batches import Streaming

    torch.manual_seed(0)
    model = reads_batches(mlp(config["input_dim"], config["num_classes"], [256, 256], 0.0))
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    stream = Streaming(ray.train.get_dataset_shard("train"), torch.device("cpu"), row_bytes=config["row_bytes"])

    def step(x, y):
        loss = F.cross_entropy(model(x), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    pinned_x, pinned_y = next(iter(stream.batches(config["batch_size"])))
    rows = {"stream": [], "pinned": []}
    for pair in range(config["pairs"]):
        started, seen, steps = time.perf_counter(), 0, 0
        for x, y in stream.batches(config["batch_size"], seed=pair):
            step(x, y)
            seen, steps = seen + len(y), steps + 1
        rows["stream"].append(seen / (time.perf_counter() - started))
        started = time.perf_counter()
        for _ in range(steps):
            step(pinned_x, pinned_y)
        rows["pinned"].append(steps * len(pinned_y) / (time.perf_counter() - started))
    Path(config["out"]).write_text(json.dumps(rows))  # one local machine; Train V2 keeps metrics with checkpoints


def plasma_mib() -> int:
    from pipelines.cluster.ray_private import memory_summary

    found = PLASMA.search(memory_summary(stats_only=True))
    return int(found.group(1)) if found else 0


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--pairs", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=1024)
    args = parser.parse_args()
    import ray.train
    from ray.train.torch import TorchTrainer

    with tempfile.TemporaryDirectory() as root:
        source = write_classification(Path(root) / "table.parquet", rows=args.rows, features=32)
        # cache_shard_mb=0: the streaming path (what data larger than the in-memory cache takes) is what is measured.
        cfg = load_config(
            "configs/quickstart.yaml", [f"storage.root={root}", f"data.source={source}", "train.cache_shard_mb=0"]
        )
        runtime.start(cfg)
        started = time.perf_counter()
        splits = ingest.ingest(cfg)
        ingest_s = time.perf_counter() - started
        peak, done = [plasma_mib()], threading.Event()

        def sample():
            while not done.is_set():
                peak[0] = max(peak[0], plasma_mib())
                done.wait(1.0)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        trainer = TorchTrainer(
            stall_loop,
            train_loop_config={
                "input_dim": splits.input_dim,
                "row_bytes": splits.preprocessing.row_bytes,
                "num_classes": splits.num_classes,
                "batch_size": args.batch_size,
                "pairs": args.pairs,
                "out": f"{root}/rows.json",
            },
            scaling_config=ray.train.ScalingConfig(num_workers=1, resources_per_worker={"CPU": 1}),
            run_config=ray.train.RunConfig(name="ingest", storage_path=f"{root}/ray"),
            datasets={"train": splits.train},
        )
        trainer.fit()
        rows = json.loads(Path(root, "rows.json").read_text())
        done.set()
        sampler.join()
        runtime.stop()
    stream, pinned = median(rows["stream"]), median(rows["pinned"])
    record(
        [
            {
                "name": "ingest_stall_fraction",
                "value": round(1 - stream / pinned, 3),
                "unit": "fraction",
                "target": 0.10,
                "baseline": "the same steps on one pinned in-memory batch, same worker",
                "detail": {
                    "rows": args.rows,
                    "train_rows": splits.num_rows["train"],
                    "stream_rows_per_s": round(stream),
                    "pinned_rows_per_s": round(pinned),
                    "pairs": args.pairs,
                    "ingest_s": round(ingest_s, 1),
                    "peak_object_store_mib": peak[0],
                    "model": "mlp [256, 256], batch 1024",
                },
            }
        ]
    )


if __name__ == "__main__":
    main()
