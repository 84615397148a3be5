"""ingest_images: decoding images (JPEG decode, resize, standardise; the training shift on batches), three ways
side by side on the same generated JPEG files, in one run:

  (a) Kiln's ingest in the driver (pipelines/encoding.py, one process),
  (b) the same work in Ray Data tasks (encode_in_ray_data below, map_batches over every CPU),
  (c) a plain torch DataLoader with 2 workers doing the same decode per image.

Kiln decodes a set once, before the search, and every trial's epochs read the decoded tensors; so what a training
step waits for is the per-batch augmentation, measured as `image_augment_stall_fraction` (1 - steps/s with the
shift / steps/s without, a small CNN on 64x64 RGB batches of 64).

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

from pipelines import images
from pipelines.encoding import Preprocessing

from common import record

# Rows per Ray Data task: on 2 cores, 3000 JPEGs in blocks of 256 rows decoded at 472 images/s, of 1000 rows at
# 1514/s (a task's start-up is what small blocks pay).
ROWS_PER_DECODE_TASK = 1000


def encode_in_ray_data(part: pd.DataFrame, prep: Preprocessing, features: list[str],
                       label: str) -> tuple[np.ndarray, np.ndarray]:
    """Images are decoded, resized and standardised by Ray Data tasks on every CPU of the runtime
    (`map_batches`), not in the driver; rows keep their order, so a run is repeatable."""
    import ray.data

    chunks = [part.iloc[i:i + ROWS_PER_DECODE_TASK] for i in range(0, len(part), ROWS_PER_DECODE_TASK)]
    context = ray.data.DataContext.get_current()
    kept, context.execution_options.preserve_order = context.execution_options.preserve_order, True
    try:
        encoded = ray.data.from_pandas(chunks).map_batches(
            _encode_batch, batch_format="pandas", batch_size=None, fn_kwargs={"prep": prep, "features": features,
                                                                              "label": label})
        xs, ys = [], []
        for batch in encoded.iter_batches(batch_format="numpy", batch_size=None):
            xs.append(np.asarray(batch["x"], dtype=np.float32))
            ys.append(batch["y"])
    except Exception as err:  # Ray wraps the task's error; a bad image is the user's data, said in one line
        cause = err
        while cause is not None and not isinstance(cause, images.ImageError):
            cause = cause.__cause__ or cause.__context__
        if cause is None:
            raise
        raise images.ImageError(str(cause).splitlines()[-1].split("ImageError: ")[-1]) from None
    finally:
        context.execution_options.preserve_order = kept
    return np.concatenate(xs), np.concatenate(ys)


def _encode_batch(batch: pd.DataFrame, *, prep: Preprocessing, features: list[str], label: str) -> dict:
    return {"x": prep.transform(batch[features], allow_paths=True), "y": prep.encode(batch[label])}


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
    import numpy as np
    import torch
    from torch.utils.data import DataLoader, Dataset

    from pipelines import images

    mean = np.asarray(encoder.channel_mean, np.float32)[:, None, None]
    std = np.asarray(encoder.channel_std, np.float32)[:, None, None]

    class Decoded(Dataset):
        def __len__(self):
            return len(paths)

        def __getitem__(self, i):
            pixels = images.pixels(paths[i], size=encoder.size, channels=encoder.channels, allow_paths=True)
            return torch.from_numpy(((pixels - mean) / std).reshape(-1))  # per channel, as Kiln's encoding

    started = time.perf_counter()
    for _ in DataLoader(Decoded(), batch_size=batch, num_workers=workers):
        pass
    return len(paths) / (time.perf_counter() - started)


def augment_stall(encoder, steps: int = 60) -> tuple[float, float, float]:
    import torch
    import torch.nn.functional as F

    from pipelines.config import ModelConfig
    from pipelines.encoding import Slot
    from pipelines.models import augment, build_model

    slots = [Slot("image", 0, encoder.width, channels=encoder.channels, size=encoder.size)]
    model = build_model(ModelConfig(hidden=[64], image_channels=[16, 32]), input_dim=encoder.width,
                        num_classes=4, slots=slots)
    optimizer = torch.optim.AdamW(model.parameters())
    x, y = torch.randn(64, encoder.width), torch.randint(0, 4, (64,))
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


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--images", type=int, default=6000)
    args = parser.parse_args()
    import pandas as pd

    from pipelines import encoding, images, runtime
    from pipelines.config import load_config

    cores = os.cpu_count() or 1
    with tempfile.TemporaryDirectory() as root:
        folder = write_jpegs(Path(root) / "jpegs", args.images)
        frame = pd.DataFrame(images.class_folders(folder), columns=["image", "label"])
        prep = encoding.fit(frame, {"image": "image"}, frame["label"], max_categories=50, image_size=64)
        encoder = prep.encoders[0]

        started = time.perf_counter()
        prep.transform(frame[["image"]], allow_paths=True)
        driver = len(frame) / (time.perf_counter() - started)

        cfg = load_config("configs/examples/digits_images.yaml", [f"storage.root={root}/runs"])
        runtime.start(cfg)
        encode_in_ray_data(frame.head(256), prep, ["image"], "label")  # the workers' imports, once
        started = time.perf_counter()
        encode_in_ray_data(frame, prep, ["image"], "label")
        tasks = len(frame) / (time.perf_counter() - started)
        runtime.stop()

        loader = dataloader_images_per_s(list(frame["image"]), encoder)
    stall, plain_steps, shifted_steps = augment_stall(encoder)
    detail = {"images": args.images, "jpeg": "96x96 RGB, quality 90", "resized_to": 64, "cores": cores}
    record([
        {"name": "image_decode_per_core_driver", "value": round(driver), "unit": "images/s/core",
         "baseline": "one process", "detail": detail},
        {"name": "image_decode_per_core_ray_data", "value": round(tasks / cores), "unit": "images/s/core",
         "baseline": f"map_batches over {cores} CPUs (warm workers)", "detail": detail},
        {"name": "image_decode_per_core_dataloader", "value": round(loader / 2), "unit": "images/s/core",
         "baseline": "torch DataLoader, 2 workers, same decode", "detail": detail},
        {"name": "image_augment_stall_fraction", "value": round(stall, 3), "unit": "fraction", "target": 0.10,
         "baseline": "the same CNN steps without the shift",
         "detail": {"steps_per_s": round(plain_steps, 1), "steps_per_s_with_shift": round(shifted_steps, 1),
                    "model": "image_channels [16, 32], 64x64 RGB, batch 64"}},
    ])


if __name__ == "__main__":
    main()
