"""A frozen pretrained text encoder's one pass over a column, before the search: the distinct texts through Ray
Data `map_batches` over an actor pool (one model load per actor, a GPU each when the cluster has them), kept
in a cache under storage.root keyed by the encoder's files and the texts themselves, so a second run on the
same data (a rerun, a --resume, another search) reads the vectors instead of paying the encoder again.

The vectors are handed to the process's backbone (pretrained.backbone), which then answers those texts from
memory: the driver's transform of train, val and test, and evaluation after the search, load no encoder.
"""

from __future__ import annotations

import hashlib
import os
import time
from pathlib import Path

import numpy as np
import pandas as pd

from pipelines.data import pretrained

ROW, TEXT, VECTOR = "row", "text", "vector"
ACTOR_CPUS = 4  # an actor's torch threads at most: a large node runs several actors rather than one of many threads
HASHED_FILES = ("config.json", "tokenizer.json", pretrained.WEIGHTS)  # what decides a text's vector


def distinct_texts(values: pd.Series) -> list[str]:
    """The column's distinct texts, a missing cell as the empty text (as TextBackbone.embed takes it)."""
    return list(dict.fromkeys(pretrained.as_texts(values)))


def cache_key(encoder, texts: list[str]) -> str:
    """What the vectors depend on: the model folder's config, tokenizer and weights, the pooling, and the texts."""
    digest = hashlib.sha256(f"{encoder.pooling}\0{encoder.dim}\0".encode())
    folder = Path(encoder.pretrained)
    for name in HASHED_FILES:
        with open(folder / name, "rb") as f:
            while chunk := f.read(1 << 20):
                digest.update(chunk)
    for t in texts:
        digest.update(t.encode("utf-8", "surrogatepass") + b"\0")
    return digest.hexdigest()[:32]


def read_cached(path: Path, rows: int, dim: int) -> np.ndarray | None:
    """The cached vectors, when the file is there and has the shape these texts need (no pickles: a plain .npy)."""
    try:
        vectors = np.load(path, allow_pickle=False)
    except (OSError, ValueError):
        return None
    return vectors if vectors.shape == (rows, dim) and vectors.dtype == np.float32 else None


def write_cached(path: Path, vectors: np.ndarray) -> None:
    """Written under a temporary name and moved into place: a stopped run leaves no partial cache file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.{os.getpid()}.partial")
    with open(partial, "wb") as f:
        np.save(f, vectors, allow_pickle=False)
    partial.replace(path)


def embed_columns(prep, frame: pd.DataFrame, *, cache: Path, batch_size: int, use_gpu: bool) -> list[str]:
    """Every frozen pretrained column of `frame` embedded once (from the cache, or by the actor pool), and the
    vectors handed to the process's backbone. Lines saying what it did, for ingest's summary."""
    said = []
    for encoder in prep.encoders:
        if not encoder.frozen:
            continue
        texts = distinct_texts(frame[encoder.name])
        path = cache / f"{cache_key(encoder, texts)}.npy"
        started = time.perf_counter()
        vectors = read_cached(path, len(texts), encoder.dim)
        if vectors is not None:
            said.append(f"{encoder.name}: {len(texts):,} distinct texts' vectors read from the cache ({path})")
        else:
            vectors, actors = actor_pool_pass(encoder, texts, batch_size=batch_size, use_gpu=use_gpu)
            write_cached(path, vectors)
            seconds = time.perf_counter() - started
            said.append(
                f"{encoder.name}: {len(texts):,} distinct texts embedded by {actors} Ray Data actor"
                f"{'s' if actors > 1 else ''} in {seconds:.1f} s ({len(texts) / max(seconds, 1e-9):.0f}/s); "
                f"cached for the next run on these texts ({path})"
            )
        pretrained.backbone(encoder.pretrained, encoder.pooling).remember(texts, vectors)
    return said


def actor_pool_pass(encoder, texts: list[str], *, batch_size: int, use_gpu: bool) -> tuple[np.ndarray, int]:
    """[texts, dim] float32 in the texts' order, from `map_batches` over an autoscaling pool of Embed actors: one
    per GPU, or one per ACTOR_CPUS of the cluster's CPUs (the pass runs before the search, so nothing else wants
    them; the texts are already in the object store, so no read task waits for a CPU), and no more than the
    texts' batches."""
    import ray
    import ray.data

    resources = ray.cluster_resources()
    gpus = int(resources.get("GPU", 0)) if use_gpu else 0
    cpus = max(resources.get("CPU", 1.0), 1.0)
    batches = max(1, -(-len(texts) // batch_size))
    per_actor = 1.0 if gpus else min(cpus, ACTOR_CPUS)
    most = max(1, min(gpus or int(cpus // per_actor), batches))
    rows = ray.data.from_pandas(pd.DataFrame({ROW: np.arange(len(texts)), TEXT: texts}))
    embedded = rows.map_batches(
        Embed,
        fn_constructor_args=(encoder.pretrained, encoder.pooling, int(per_actor)),
        batch_size=batch_size,
        batch_format="pandas",
        compute=ray.data.ActorPoolStrategy(min_size=1, max_size=most),
        num_cpus=0 if gpus else per_actor,
        num_gpus=1 if gpus else 0,
    )
    out = np.zeros((len(texts), encoder.dim), dtype=np.float32)
    for batch in embedded.iter_batches(batch_size=None, batch_format="numpy"):
        out[batch[ROW]] = np.stack(batch[VECTOR])
    return out, most


class Embed:
    """A Ray Data actor: the encoder loaded once, then a batch of (row, text) to (row, vector) at a time."""

    def __init__(self, folder: str, pooling: str, threads: int):
        import torch

        torch.set_num_threads(max(1, threads))  # Ray sets an actor's threads from its CPUs; say it, not guess
        self.backbone = pretrained.TextBackbone(Path(folder), pooling=pooling)
        if torch.cuda.is_available():
            self.backbone.model.to("cuda")

    def __call__(self, batch: pd.DataFrame) -> pd.DataFrame:
        vectors = self.backbone.embed(list(batch[TEXT]), batch_size=len(batch))
        return pd.DataFrame({ROW: batch[ROW].to_numpy(), VECTOR: list(vectors)})
