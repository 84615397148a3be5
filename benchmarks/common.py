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
