"""ingest_images: decoding images (JPEG decode, resize, standardise; the training shift on batches), three ways
side by side on the same generated JPEG files, in one run:

  (a) Kiln's ingest in the driver (pipelines/data/preprocessing.py, one process),
  (b) the same work in Ray Data tasks: Kiln's streamed pipeline for sets too large to decode up front
      (ingest.decoding, map_batches over every CPU),
  (c) a plain torch DataLoader with 2 workers doing the same decode per image.

A set that fits `train.cache_shard_mb` decoded is decoded once, before the search, and every trial's epochs read
the decoded tensors; what a training step waits for then is the per-batch augmentation, measured as
`image_augment_stall_fraction` (1 - steps/s with the shift / steps/s without, a small CNN on 64x64 RGB batches of
64). A larger set streams: `image_stream_stall_fraction` is 1 - images/s of the same CNN fed by the stream /
images/s on batches in memory.

    .venv/bin/python benchmarks/ingest_images.py [--images 6000]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from pipelines.data.preprocessing import Preprocessing

from common import record


def streamed(part: pd.DataFrame, prep: Preprocessing):
    """Kiln's streamed pipeline for image sets too large to decode up front (ingest.decoding; its check pass
    decodes every image once)."""
    from pipelines.data import ingest

    return ingest.decoding(part, prep, ["image"], "label", seed=0, split="train")


def images_per_s(dataset) -> float:
    """One pass over a lazy dataset: every image decoded in Ray Data tasks, the blocks dropped."""
    started, rows = time.perf_counter(), 0
    for batch in dataset.iter_batches(batch_size=None, batch_format="numpy"):
        rows += len(batch["y"])
    return rows / (time.perf_counter() - started)


def write_jpegs(root: Path, count: int, side: int = 96) -> Path:
    """`count` colour JPEG files in 4 class folders: gradients plus noise, so decoding does real work."""
    from PIL import Image

    rng = np.random.default_rng(0)
    ramp = np.linspace(0, 255, side)[None, :, None]
    for i in range(count):
        folder = root / f"class{i % 4}"
        folder.mkdir(parents=True, exist_ok=True)
        pixels = np.clip(ramp * (i % 4 + 1) / 4 + rng.normal(0, 40, (side, side, 3)), 0, 255).astype(np.uint8)
        Image.fromarray(pixels).save(folder / f"{i:05d}.jpg", quality=90)
    return root


def dataloader_images_per_s(paths: list[str], encoder, workers: int = 2, batch: int = 64) -> float:
    import torch
    from torch.utils.data import DataLoader, Dataset

    from pipelines.data import images

    class Decoded(Dataset):
        def __len__(self):
            return len(paths)

        def __getitem__(self, i):
            pixels = images.pixels(paths[i], size=encoder.size, channels=encoder.channels, allow_paths=True)
            return torch.from_numpy(pixels)  # uint8, as Kiln's encoding (the model standardises)

    started = time.perf_counter()
    for _ in DataLoader(Decoded(), batch_size=batch, num_workers=workers):
        pass
    return len(paths) / (time.perf_counter() - started)


def augment_stall(prep, steps: int = 60) -> tuple[float, float, float]:
    import torch
    import torch.nn.functional as F

    from pipelines.config import ModelConfig
    from pipelines.model.networks import augment, build_model

    slots = prep.slots
    model = build_model(
        ModelConfig(hidden=[64], image_channels=[16, 32]), input_dim=prep.width, num_classes=4, slots=slots
    )
    optimizer = torch.optim.AdamW(model.parameters())
    x = {"x": torch.zeros(64, 0), slots[0].key: torch.randint(0, 256, (64, *slots[0].shape), dtype=torch.uint8)}
    y = torch.randint(0, 4, (64,))
    generator = torch.Generator().manual_seed(0)

    def rate(shift: bool) -> float:
        started = time.perf_counter()
        for _ in range(steps):
            batch = augment(x, slots, flip=True, generator=generator) if shift else x
            optimizer.zero_grad()
            F.cross_entropy(model(batch), y).backward()
            optimizer.step()
        return steps / (time.perf_counter() - started)

    rate(False)  # warm up
    plain, shifted = [], []
    for _ in range(3):  # interleaved
        plain.append(rate(False))
        shifted.append(rate(True))
    plain_rate, shifted_rate = float(np.median(plain)), float(np.median(shifted))
    return 1 - shifted_rate / plain_rate, plain_rate, shifted_rate


def stream_stall(dataset, prep, passes: int = 2) -> tuple[float, float, float]:
    """1 - (images/s of CNN steps fed by the streamed pipeline, as a trial reads it) / (images/s of the same
    steps on batches already in memory), interleaved; the step and the decode tasks share this machine's cores."""
    import torch
    import torch.nn.functional as F

    from pipelines.config import ModelConfig
    from pipelines.data.preprocessing import from_block
    from pipelines.model.networks import build_model
    from pipelines.training.batches import InMemory, Streaming

    torch.set_num_threads(1)  # as a trial's worker
    model = build_model(
        ModelConfig(hidden=[64], image_channels=[16, 32]), input_dim=prep.width, num_classes=4, slots=prep.slots
    )
    optimizer = torch.optim.AdamW(model.parameters())
    stream = Streaming(dataset.iterator(), torch.device("cpu"), row_bytes=prep.row_bytes)
    first = next(iter(dataset.iter_batches(batch_size=512, batch_format="numpy")))
    memory = InMemory.from_arrays(from_block(first), torch.device("cpu"))

    def rate(source, limit: int | None = None) -> float:
        started, rows = time.perf_counter(), 0
        for step, (x, y) in enumerate(source):
            optimizer.zero_grad()
            F.cross_entropy(model(x), y).backward()
            optimizer.step()
            rows += len(y)
            if limit is not None and step + 1 >= limit:
                break
        return rows / (time.perf_counter() - started)

    rate(memory.batches(64, seed=0))  # warm up
    streamed, in_memory = [], []
    for i in range(passes):
        streamed.append(rate(stream.batches(64, seed=i)))
        in_memory.append(np.median([rate(memory.batches(64, seed=j)) for j in range(3)]))
    streamed_rate, memory_rate = float(np.median(streamed)), float(np.median(in_memory))
    return 1 - streamed_rate / memory_rate, streamed_rate, memory_rate


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--images", type=int, default=6000)
    args = parser.parse_args()
    import pandas as pd

    from pipelines.cluster import runtime
    from pipelines.config import load_config
    from pipelines.data import images, preprocessing

    cores = os.cpu_count() or 1
    with tempfile.TemporaryDirectory() as root:
        folder = write_jpegs(Path(root) / "jpegs", args.images)
        frame = pd.DataFrame(images.class_folders(folder), columns=["image", "label"])
        prep = preprocessing.fit(frame, {"image": "image"}, frame["label"], max_categories=50, image_size=64)
        encoder = prep.encoders[0]

        started = time.perf_counter()
        decoded = prep.transform(frame[["image"]], allow_paths=True)
        driver = len(frame) / (time.perf_counter() - started)
        bytes_per_image = sum(v.nbytes for v in decoded.values()) / len(frame)
        del decoded

        cfg = load_config("configs/examples/digits_images.yaml", [f"storage.root={root}/runs"])
        runtime.start(cfg)
        images_per_s(streamed(frame.head(256), prep))  # the workers' imports, once
        dataset = streamed(frame, prep)
        tasks = images_per_s(dataset)
        streaming, streamed_steps, memory_steps = stream_stall(dataset, prep)
        runtime.stop()

        loader = dataloader_images_per_s(list(frame["image"]), encoder)
    stall, plain_steps, shifted_steps = augment_stall(prep)
    detail = {"images": args.images, "jpeg": "96x96 RGB, quality 90", "resized_to": 64, "cores": cores}
    record(
        [
            {
                "name": "image_decode_per_core_driver",
                "value": round(driver),
                "unit": "images/s/core",
                "baseline": "one process",
                "detail": detail,
            },
            {
                "name": "image_decoded_bytes_per_image",
                "value": round(bytes_per_image),
                "unit": "bytes",
                "baseline": f"{4 * encoder.width} bytes as float32 pixels (the matrix layout before typed batches)",
                "detail": {**detail, "what": "a decoded set's arrays per image, as a trial holds them"},
            },
            {
                "name": "image_decode_per_core_ray_data",
                "value": round(tasks / cores),
                "unit": "images/s/core",
                "baseline": f"map_batches over {cores} CPUs (warm workers)",
                "detail": detail,
            },
            {
                "name": "image_decode_per_core_dataloader",
                "value": round(loader / 2),
                "unit": "images/s/core",
                "baseline": "torch DataLoader, 2 workers, same decode",
                "detail": detail,
            },
            {
                "name": "image_stream_stall_fraction",
                "value": round(streaming, 3),
                "unit": "fraction",
                "target": 0.10,
                "baseline": "the same CNN steps on batches in memory",
                "detail": {
                    "images_per_s_streamed": round(streamed_steps),
                    "images_per_s_in_memory": round(memory_steps),
                    "model": "image_channels [16, 32], 64x64 RGB, batch 64, one thread",
                    "path": "train.cache_shard_mb exceeded: Ray Data decodes every epoch",
                },
            },
            {
                "name": "image_augment_stall_fraction",
                "value": round(stall, 3),
                "unit": "fraction",
                "target": 0.10,
                "baseline": "the same CNN steps without the shift",
                "detail": {
                    "steps_per_s": round(plain_steps, 1),
                    "steps_per_s_with_shift": round(shifted_steps, 1),
                    "model": "image_channels [16, 32], 64x64 RGB, batch 64",
                },
            },
        ]
    )


if __name__ == "__main__":
    main()
