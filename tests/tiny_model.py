"""A tiny trained model saved as a real Kiln checkpoint: shared by unit tests, serving tests and benchmarks."""

from pathlib import Path

import numpy as np
import pandas as pd
import torch

from pipelines.config import ModelConfig
from pipelines.data import preprocessing
from pipelines.model import checkpoint
from pipelines.training.batches import tensors


def train_tiny(folder: Path, *, steps: int = 100, seed: int = 0) -> pd.DataFrame:
    """A tiny model on a separable problem with string labels, saved as a Kiln checkpoint."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 4)) * 3 + 10
    df = pd.DataFrame(x, columns=["a", "b", "c", "d"]).assign(label=np.where(x[:, 0] > 10, "high", "low"))
    prep = preprocessing.fit(df, dict.fromkeys(["a", "b", "c", "d"], "number"), df["label"], max_categories=10)
    cfg = ModelConfig(hidden=[8], dropout=0.0)
    torch.manual_seed(seed)
    from pipelines.model.networks import build_model

    model = build_model(cfg, input_dim=4, num_classes=2)
    opt = torch.optim.Adam(model.parameters(), lr=0.05)
    xt, yt = tensors(prep.transform(x)), torch.from_numpy(prep.encode(df["label"]))
    for _ in range(steps):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(xt), yt).backward()
        opt.step()
    folder.mkdir(parents=True, exist_ok=True)
    checkpoint.save(folder, model=model, optimizer=opt, model_cfg=cfg, preprocessing=prep, epoch=1, metrics={})
    return df
