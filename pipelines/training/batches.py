"""Where a worker's batches come from: tensors kept in memory when the data is small, else Ray Data.

Ray Data starts a streaming executor for every pass over a shard (tens of milliseconds on a small machine),
which on a small dataset costs more than the epoch's arithmetic, and each trial's split coordinator costs
about 2 s to start. Data that fits `train.cache_shard_mb` is put in the object store once by the driver;
each worker takes its rows from there and slices them in place every epoch, shuffled by a seeded
permutation, so the same seed gives the same run.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import numpy as np
import torch

from pipelines.data.preprocessing import matrix_bytes

DTYPES = {"x": torch.float32}  # y keeps its own: class indices (int64) or a standardised target (float32)
CHUNK_BYTES = 16 << 20  # what Ray Data hands the streaming path at a time


class InMemory:
    """One shard as two tensors; every epoch is a seeded permutation sliced into batches."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor):
        self.x, self.y = x, y

    @classmethod
    def from_arrays(cls, arrays: tuple, device: torch.device) -> InMemory:
        """Numpy (x, y) as handed out by the object store (read-only, so copied once into tensors)."""
        x, y = arrays
        return cls(torch.tensor(x, dtype=torch.float32, device=device), torch.tensor(y, device=device))

    def part(self, rank: int, world_size: int) -> InMemory:
        """Every world_size-th row from `rank`: ranks split the val set exactly, no row dropped or repeated."""
        return InMemory(self.x[rank::world_size], self.y[rank::world_size])

    def __len__(self) -> int:
        return len(self.y)

    def batches(self, batch_size: int, *, seed: int | None = None) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """`seed` shuffles (training); None keeps the order (evaluation)."""
        if seed is None:
            for start in range(0, len(self), batch_size):
                yield self.x[start : start + batch_size], self.y[start : start + batch_size]
            return
        order = torch.randperm(len(self), generator=torch.Generator().manual_seed(seed)).to(self.x.device)
        for start in range(0, len(self), batch_size):
            index = order[start : start + batch_size]
            yield self.x[index], self.y[index]


class Streaming:
    """A Ray Data shard read afresh every epoch, for data too large to keep.

    Ray Data costs about 1 ms of Python per batch it hands out, whatever the batch's size: at training batch
    sizes that stalled a compute-bound step by 17%. So it hands out chunks of about CHUNK_BYTES, which are
    shuffled and sliced here (`rebatch`): training sees a local shuffle over each chunk's window."""

    def __init__(self, shard, device: torch.device, *, input_dim: int):
        self.shard, self.device = shard, device
        self.chunk_rows = max(1, CHUNK_BYTES // matrix_bytes(1, input_dim))

    def batches(self, batch_size: int, *, seed: int | None = None) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """`seed` shuffles (training); None keeps the order (evaluation)."""
        chunks = self.shard.iter_batches(batch_size=max(self.chunk_rows, batch_size), batch_format="numpy")
        yield from rebatch(((chunk["x"], chunk["y"]) for chunk in chunks), batch_size, seed=seed, device=self.device)


def to_device(tensor: torch.Tensor, device: torch.device) -> torch.Tensor:
    """To a GPU through pinned host memory, without waiting for the copy (the step that uses it queues after it on
    the same stream); on the CPU, the tensor itself."""
    if device.type != "cuda":
        return tensor
    return tensor.pin_memory().to(device, non_blocking=True)


def rebatch(
    chunks: Iterable[tuple[np.ndarray, np.ndarray]], batch_size: int, *, seed: int | None, device: torch.device
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Batches of `batch_size` rows from a stream of (x, y) chunks of any size: each chunk is shuffled by
    `seed` (None: kept in order), rows left over at a chunk's end lead the next chunk's first batch, and only
    the stream's last batch may be short. Equal rows give equal batch counts, so DDP ranks stay in step."""
    generator = None if seed is None else torch.Generator().manual_seed(seed)
    carry_x = carry_y = None
    for chunk_x, chunk_y in chunks:
        x, y = torch.tensor(chunk_x, dtype=DTYPES["x"]), torch.tensor(chunk_y)
        if generator is not None:
            order = torch.randperm(len(y), generator=generator)
            x, y = x[order], y[order]
        if carry_y is not None:
            x, y = torch.cat([carry_x, x]), torch.cat([carry_y, y])
        whole = len(y) - len(y) % batch_size
        on_device_x, on_device_y = to_device(x[:whole], device), to_device(y[:whole], device)
        for start in range(0, whole, batch_size):
            yield on_device_x[start : start + batch_size], on_device_y[start : start + batch_size]
        carry_x, carry_y = x[whole:], y[whole:]
    if carry_y is not None and len(carry_y):
        yield carry_x.to(device), carry_y.to(device)


def open_split(
    name: str,
    *,
    arrays: dict | None,
    device: torch.device,
    rank: int,
    world_size: int,
    input_dim: int,
    equal: bool,
    shard,
) -> InMemory | Streaming:
    """This worker's part of split `name`: from the object store when the driver handed out arrays, else
    Ray Data's shard. `equal` gives every rank the same number of rows (DDP steps in lockstep; at most
    world_size - 1 rows are left out of an epoch, as Ray Data's equal split does); otherwise the rows are
    dealt out exactly (evaluation, whose sums are all-reduced). `shard(name)` gives the Ray Data iterator."""
    import ray

    if arrays is None:
        return Streaming(shard(name), device, input_dim=input_dim)
    held = arrays[name]  # an object ref, or (x, y) themselves when training in this process (training.local)
    whole = InMemory.from_arrays(held if isinstance(held, tuple) else ray.get(held), device)
    if not equal:
        return whole.part(rank, world_size)
    per_rank = len(whole) // world_size
    return InMemory(whole.x[rank * per_rank : (rank + 1) * per_rank], whole.y[rank * per_rank : (rank + 1) * per_rank])
