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
import torch
import torch.nn.functional as F

from pipelines import ingest, runtime
from pipelines.config import load_config
from pipelines.models import build_model
from pipelines.training.launch import build_trainer

from common import median, pin_threads, record


def bare_epochs(cfg, x: np.ndarray, y: np.ndarray, val_x: np.ndarray, val_y: np.ndarray,
                epochs: int) -> list[float]:
    """The same model, batch size and per-epoch validation as Kiln's loop, over in-memory tensors: the floor."""
    torch.manual_seed(cfg.train.seed)
    model = build_model(cfg.model, input_dim=x.shape[1], num_classes=int(y.max()) + 1)
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.train.lr)
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    vx, vy = torch.from_numpy(val_x), torch.from_numpy(val_y)
    times = []
    for epoch in range(epochs):
        started = time.perf_counter()
        model.train()
        order = torch.randperm(len(xt), generator=torch.Generator().manual_seed(epoch))
        for i in range(0, len(xt), cfg.train.batch_size):
            index = order[i:i + cfg.train.batch_size]
            loss = F.cross_entropy(model(xt[index]), yt[index])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        model.eval()
        with torch.inference_mode():
            correct = sum(int((model(vx[i:i + cfg.train.batch_size]).argmax(1) == vy[i:i + cfg.train.batch_size])
                              .sum()) for i in range(0, len(vx), cfg.train.batch_size))
        assert 0 <= correct <= len(vy)
        times.append(time.perf_counter() - started)
    return times


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
    trainer = build_trainer(cfg, datasets={"train": splits.train, "val": splits.val},
                            preprocessing=splits.preprocessing, name=name, use_gpu=False,
                            arrays=splits.arrays, callbacks=[report_clock(arrivals)])
    frame = trainer.fit().metrics_dataframe
    times = [float(t) for t in arrivals.read_text().split()]
    return frame.sort_values("epoch")["epoch_time_s"].tolist()[1:epochs], list(np.diff(times))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--pairs", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=5)
    args = parser.parse_args()
    import ray

    pin_threads(1)
    with tempfile.TemporaryDirectory() as root:
        cfg = load_config("configs/quickstart.yaml", [
            f"storage.root={root}", "train.num_workers=1", "train.cpus_per_worker=1", f"train.epochs={args.epochs}",
            f"train.keep_checkpoints={args.epochs}", "tune.num_samples=1"]).for_task("classification")
        runtime.start(cfg)
        splits = ingest.ingest(cfg)
        # The very arrays the Kiln side trains on (copied: the object store's are read-only).
        x, y = (a.copy() for a in ray.get(splits.arrays["train"]))
        val_x, val_y = (a.copy() for a in ray.get(splits.arrays["val"]))
        bare, kiln, kiln_wall = [], [], []
        for pair in range(args.pairs):  # the first epoch on each side is warm-up
            bare.append(median(bare_epochs(cfg, x, y, val_x, val_y, args.epochs)[1:]))
            in_loop, wall = kiln_epochs(cfg, splits, args.epochs, f"overhead-{pair}", root)
            kiln.append(median(in_loop))
            kiln_wall.append(median(wall))
        runtime.stop()
    ratio = median(kiln) / median(bare)
    record([{"name": "train_overhead_ratio", "value": round(ratio, 3), "unit": "x", "target": 1.05,
             "baseline": "bare PyTorch loop, same model/data/batch/threads/validation",
             "detail": {"kiln_epoch_s": median(kiln), "bare_epoch_s": median(bare), "pairs": args.pairs,
                        "kiln_wall_epoch_s": median(kiln_wall),
                        "wall_ratio": round(median(kiln_wall) / median(bare), 3)}}])


if __name__ == "__main__":
    main()
