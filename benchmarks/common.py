"""Shared by the benchmarks: pinned threads, interleaved pairs, one JSON figure per result."""

from __future__ import annotations

import json
import os
import platform
import statistics
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results.json"


def pin_threads(threads: int = 1) -> None:
    import torch

    os.environ["OMP_NUM_THREADS"] = str(threads)
    torch.set_num_threads(threads)


def median(values: list[float]) -> float:
    return float(statistics.median(values))


def machine() -> str:
    return f"{platform.machine()}, {os.cpu_count()} cores, {platform.python_version()}"


def record(figures: list[dict]) -> dict:
    """Print this benchmark's figures as one JSON object and merge them into results.json by name."""
    payload = {"machine": machine(), "figures": figures}
    print(json.dumps(payload, indent=2))
    existing = json.loads(RESULTS.read_text()) if RESULTS.exists() else {"figures": []}
    fresh = {f["name"]: f for f in figures}
    kept = [fresh.pop(f["name"], f) for f in existing.get("figures", [])]  # a figure keeps its row in the table
    merged = kept + list(fresh.values())
    RESULTS.write_text(json.dumps({"machine": machine(), "figures": merged}, indent=2) + "\n")
    return payload


def classification(rows: int, features: int, classes: int = 10, seed: int = 0):
    """Generated classification data (class centres plus noise) as float32 x and int64 labels: never downloaded."""
    import numpy as np

    rng = np.random.default_rng(seed)
    labels = rng.integers(0, classes, size=rows)
    centres = rng.normal(size=(classes, features)).astype(np.float32)
    x = centres[labels] + rng.normal(scale=2.0, size=(rows, features)).astype(np.float32)
    return x, labels.astype(np.int64)


def write_classification(path: Path, *, rows: int, features: int, classes: int = 10, seed: int = 0) -> Path:
    """`classification` as a parquet table with columns f0..fN and label."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    x, labels = classification(rows, features, classes, seed)
    columns = {f"f{i}": x[:, i] for i in range(features)} | {"label": labels}
    pq.write_table(pa.table(columns), path, row_group_size=64 * 1024)
    return path


def matrix(batch: dict, y):
    """(x, y) of a table of plain columns, from ingest's typed batch (its float32 matrix under DENSE)."""
    from pipelines.data.preprocessing import DENSE

    if set(batch) != {DENSE}:
        raise ValueError(f"the bare loop takes plain columns only, not {sorted(set(batch) - {DENSE})}")
    return batch[DENSE], y


def bare_training(cfg, x, y, val_x, val_y, epochs: int):
    """Kiln's model, optimizer, batch size and per-epoch validation in a bare PyTorch loop over in-memory arrays:
    yields (the epoch's seconds, its val accuracy) after each epoch. The floor Kiln's loop is measured against,
    and the loop the in-process peers (Optuna, plain random search) train with."""
    import time

    import torch
    import torch.nn.functional as F

    from pipelines.model.networks import build_model

    torch.manual_seed(cfg.train.seed)
    model = build_model(cfg.model, input_dim=x.shape[1], num_classes=int(y.max()) + 1)
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.train.lr)
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    vx, vy = torch.from_numpy(val_x), torch.from_numpy(val_y)
    size = cfg.train.batch_size
    for epoch in range(epochs):
        started = time.perf_counter()
        model.train()
        order = torch.randperm(len(xt), generator=torch.Generator().manual_seed(epoch))
        for i in range(0, len(xt), size):
            index = order[i : i + size]
            loss = F.cross_entropy(model(xt[index]), yt[index])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        model.eval()
        with torch.inference_mode():
            correct = sum(
                int((model(vx[i : i + size]).argmax(1) == vy[i : i + size]).sum()) for i in range(0, len(vx), size)
            )
        yield time.perf_counter() - started, correct / len(vy)


def write_teacher_table(path: Path, *, rows: int, features: int = 32, classes: int = 10, seed: int = 0) -> Path:
    """A table whose label is a random tanh network's argmax over noisy inputs: learnable, but only by a
    nonlinear model and over several epochs (a wide MLP's epochs take seconds at 200k rows). Never downloaded."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = np.random.default_rng(seed)
    x = rng.normal(size=(rows, features)).astype(np.float32)
    hidden = np.tanh(x @ rng.normal(scale=1.5 / np.sqrt(features), size=(features, 64)))
    logits = hidden @ rng.normal(size=(64, classes)) + rng.gumbel(scale=0.3, size=(rows, classes))
    columns = {f"f{i}": x[:, i] for i in range(features)} | {"label": logits.argmax(1).astype(np.int64)}
    pq.write_table(pa.table(columns), path, row_group_size=64 * 1024)
    return path
