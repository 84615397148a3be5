"""gpu: Kiln's training epoch and the served model's forward on a CUDA GPU, against the same code on the CPU.

Torch only (Ray's wheel is too large to carry to the device machine), but Kiln's own code: the epoch is
`pipelines.training.loop.train_epoch` (train.precision auto: bf16 autocast on CUDA) over
`pipelines.training.batches.InMemory` tensors on the
device, the model is DDP-wrapped over an NCCL process group of world size 1 and the epoch's loss sums are
all-reduced as a multi-worker run does; the served model is saved and loaded with `pipelines.model.checkpoint`
and run as `pipelines.model.inference.InferenceModel` runs it. Interleaved CPU GPU CPU GPU, medians.

    python3 benchmarks/gpu.py [--rows 100000] [--pairs 3] [--out gpu.json]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipelines.cluster.ports import free_port  # noqa: E402
from pipelines.config import load_config  # noqa: E402
from pipelines.data.preprocessing import Encoder, Preprocessing, Slot  # noqa: E402
from pipelines.model import checkpoint  # noqa: E402
from pipelines.model.networks import augment, build_model  # noqa: E402
from pipelines.plan.flops import count_flops  # noqa: E402
from pipelines.training.batches import InMemory, tensors  # noqa: E402
from pipelines.training.loop import autocast_dtype, sum_over_ranks, train_epoch, validate  # noqa: E402

from common import classification  # noqa: E402

CONFIG = Path(__file__).resolve().parents[1] / "configs" / "quickstart.yaml"
CASES = {
    "wide": (["model.hidden=[1024,1024]", "model.dropout=0", "train.batch_size=4096"], 64),
    "quickstart": ([], 64),
    # An image column: 3x32x32 pixels through the residual CNN of the combiner (issue 18), shifted each batch.
    "image": (["model.hidden=[256]", "model.image_channels=[64,128,256]", "train.batch_size=512"], 3 * 32 * 32),
}
IMAGE_SLOTS = [Slot("image", 0, 3 * 32 * 32, channels=3, size=32, column="image")]


def typed(x: np.ndarray, slots) -> dict[str, np.ndarray]:
    """Generated features as a batch: numbers as the dense columns, or an image slot's uint8 pixels."""
    if not slots:
        return {"x": x}
    (slot,) = slots
    pixels = np.clip(x * 40 + 128, 0, 255).astype(np.uint8).reshape(len(x), *slot.shape)
    return {"x": np.zeros((len(x), 0), np.float32), slot.key: pixels}


# Dense bf16 peaks (FLOP/s) of the devices named, for the fraction of peak an epoch reaches.
PEAK_BF16 = {"H200": 989e12, "H100": 989e12, "A100": 312e12, "L4": 121e12, "A10": 125e12}


def nccl_group() -> None:
    torch.distributed.init_process_group("nccl", init_method=f"tcp://127.0.0.1:{free_port()}", rank=0, world_size=1)


def epochs(cfg, x, y, val, device: torch.device, *, count: int, ddp: bool, slots=()) -> dict:
    """`count` epochs of Kiln's loop on `device`; seconds of each after the first, and the last val accuracy."""
    torch.manual_seed(cfg.train.seed)
    model = build_model(cfg.model, input_dim=x.shape[1], num_classes=10, slots=slots).to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.train.lr, weight_decay=cfg.train.weight_decay)
    if ddp:
        model = torch.nn.parallel.DistributedDataParallel(model, device_ids=[device.index or 0])
    train = InMemory.from_arrays((typed(x, slots), y), device)
    held_out = InMemory.from_arrays((typed(val[0], slots), val[1]), device)
    amp = autocast_dtype(cfg.train.precision, device)
    shifts = torch.Generator().manual_seed(0)
    shift = (lambda batch: augment(batch, list(slots), flip=True, generator=shifts)) if slots else None
    seconds = []
    for epoch in range(count):
        sync(device)
        started = time.perf_counter()
        loss = train_epoch(
            model, optimizer, train, batch_size=cfg.train.batch_size, seed=epoch, device=device, amp=amp, augment=shift
        )
        if ddp:
            loss = sum_over_ranks(loss, device)
        outputs, targets = validate(model, held_out, batch_size=cfg.train.batch_size)
        sync(device)
        seconds.append(time.perf_counter() - started)
    return {
        "epoch_s": statistics.median(seconds[1:]),
        "rows_per_s": len(y) / statistics.median(seconds[1:]),
        "train_loss": float(loss[0] / loss[1]),
        "val_accuracy": float((outputs.argmax(dim=1) == targets).double().mean()),
    }


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def served_forward(cfg, x, device: torch.device, batch: int, *, calls: int = 50) -> dict:
    """The registry model's forward as the endpoint runs it (softmax over logits), after a save and a load."""
    prep = Preprocessing([Encoder(f"f{i}", "number") for i in range(x.shape[1])], labels=list(range(10)))
    with tempfile.TemporaryDirectory() as folder:
        model = build_model(cfg.model, input_dim=x.shape[1], num_classes=10)
        checkpoint.save(
            folder, model=model, optimizer=None, model_cfg=cfg.model, preprocessing=prep, epoch=1, metrics={}
        )
        loaded, prep, _ = checkpoint.load_model(folder)
    loaded = loaded.to(device)
    rows = tensors(prep.transform(x[:batch].astype(np.float64)))
    times = []
    with torch.inference_mode():
        for _ in range(calls + 5):
            started = time.perf_counter()
            on_device = {key: values.to(device) for key, values in rows.items()}
            probabilities = torch.softmax(loaded(on_device), dim=1).cpu().numpy()
            times.append(time.perf_counter() - started)
    assert probabilities.shape == (batch, 10) and np.allclose(probabilities.sum(axis=1), 1.0, atol=1e-4)
    p50 = statistics.median(times[5:])
    return {"p50_ms": round(1000 * p50, 3), "rows_per_s": round(batch / p50)}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--pairs", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    if not torch.cuda.is_available():
        raise SystemExit("gpu: no CUDA device here; run this on the device machine")
    gpu, cpu = torch.device("cuda", 0), torch.device("cpu")
    nccl_group()
    result = {
        "device": torch.cuda.get_device_name(0),
        "torch": torch.__version__,
        "cpu_threads": torch.get_num_threads(),
        "train": {},
        "serve": {},
    }
    for case, (overrides, features) in CASES.items():
        cfg = load_config(CONFIG, overrides)
        rows = {"wide": args.rows, "image": 20_000}.get(case, 1257)  # the quickstart: digits' train split
        slots = IMAGE_SLOTS if case == "image" else ()
        x, y = classification(rows + rows // 5, features)
        train_xy, val = (x[:rows], y[:rows]), (x[rows:], y[rows:])
        runs = {"cpu": [], "gpu": []}
        for _ in range(args.pairs):
            runs["cpu"].append(epochs(cfg, *train_xy, val, cpu, count=args.epochs, ddp=False, slots=slots))
            runs["gpu"].append(epochs(cfg, *train_xy, val, gpu, count=args.epochs, ddp=True, slots=slots))
        summary = {side: {key: statistics.median(r[key] for r in rs) for key in rs[0]} for side, rs in runs.items()}
        summary["speedup"] = round(summary["gpu"]["rows_per_s"] / summary["cpu"]["rows_per_s"], 2)
        summary["model"] = f"mlp {cfg.model.hidden}, batch {cfg.train.batch_size}, {rows} rows" + (
            f", image CNN {cfg.model.image_channels} on 3x32x32" if slots else ""
        )
        per_sample = count_flops(cfg, features, 10, slots=slots)["flops_per_sample"]
        peak = next((v for k, v in PEAK_BF16.items() if k in result["device"]), None)
        summary["gpu_flops_per_s"] = per_sample * summary["gpu"]["rows_per_s"]
        summary["fraction_of_peak_bf16"] = round(summary["gpu_flops_per_s"] / peak, 4) if peak else None
        result["train"][case] = summary
        if slots:  # the served forward below is the numbers-only path
            print(json.dumps({case: summary}, indent=2), flush=True)
            continue
        for batch in (1, 1024):
            result["serve"][f"{case}_batch{batch}"] = {
                side: served_forward(cfg, x, device, batch) for side, device in (("cpu", cpu), ("gpu", gpu))
            }
        print(json.dumps({case: result["train"][case]}, indent=2), flush=True)
    torch.distributed.destroy_process_group()
    print(json.dumps(result, indent=2))
    out = args.out or (Path(os.environ["OUT"]) / "gpu.json" if os.environ.get("OUT") else None)
    if out:
        Path(out).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
