"""Ingest with Ray Data: read the files, check them, split, standardise, hand datasets to training."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from pipelines import data
from pipelines.config import KilnConfig


@dataclass(frozen=True)
class Splits:
    train: object  # ray.data.Dataset with columns x (float32 vector) and y (class index)
    val: object
    test_x: np.ndarray
    test_y: np.ndarray
    example: pd.DataFrame  # a few raw test rows: the registered model's input example
    preprocessing: data.Preprocessing
    fingerprint: str
    num_rows: dict[str, int]

    @property
    def test_frame(self) -> pd.DataFrame:
        return pd.DataFrame(self.test_x, columns=self.preprocessing.features)

    @property
    def test_labels(self) -> list:
        return [data._plain(v) for v in self.test_y]

    @property
    def input_dim(self) -> int:
        return len(self.preprocessing.features)

    @property
    def num_classes(self) -> int:
        return len(self.preprocessing.labels)


def read(source: data.Source):
    import ray.data

    reader = ray.data.read_csv if source.format == "csv" else ray.data.read_parquet
    return reader(source.paths)


def ingest(cfg: KilnConfig) -> Splits:
    """Read with Ray Data, split by seed, fit statistics on train only, materialise once for all trials."""
    import ray.data
    from ray.data.extensions import TensorArray

    source = data.resolve_source(cfg.data, cfg.storage_root)
    try:
        frame = read(source).to_pandas()
    except Exception as err:  # Ray wraps reader errors in its own types
        raise data.DataError(f"data.source: cannot read {source.paths[0]}: {data._one_line(err)}") from None
    features = data.check_frame(frame, cfg.data)
    train_idx, val_idx, test_idx = data.stratified_split(frame[cfg.data.label].to_numpy(), cfg.data.split)
    prep = data.fit_preprocessing(frame.iloc[train_idx], features, frame[cfg.data.label])

    def to_dataset(idx: np.ndarray):
        part = frame.iloc[idx]
        x = prep.transform(part[features].to_numpy(dtype=np.float64))
        table = pd.DataFrame({"x": TensorArray(x), "y": prep.encode(part[cfg.data.label])})
        # Materialised once here, so each trial reads blocks instead of re-running the pipeline.
        return ray.data.from_pandas(table).materialize()

    test = frame.iloc[test_idx]
    return Splits(
        train=to_dataset(train_idx),
        val=to_dataset(val_idx),
        test_x=test[features].to_numpy(dtype=np.float64),
        test_y=test[cfg.data.label].to_numpy(),
        example=test[features].head(4).reset_index(drop=True),
        preprocessing=prep,
        fingerprint=data.fingerprint(source),
        num_rows={"train": len(train_idx), "val": len(val_idx), "test": len(test_idx)},
    )
