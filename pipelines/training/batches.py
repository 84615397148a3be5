"""Where a worker's batches come from: tensors kept in memory when the data is small, else Ray Data.

Ray Data starts a streaming executor for every pass over a shard (tens of milliseconds on a small machine),
which on a small dataset costs more than the epoch's arithmetic, and each trial's split coordinator costs
about 2 s to start. Data that fits `train.cache_shard_mb` is put in the object store once by the driver;
each worker takes its rows from there and slices them in place every epoch, shuffled by a seeded
permutation, so the same seed gives the same run.

A batch is a dict of tensors, one per column kind (preprocessing.Preprocessing.transform): the functions here
slice, shuffle and move all of them together; the label travels beside it as its own tensor.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import numpy as np
import torch

from pipelines.data.preprocessing import from_block

Batch = dict[str, torch.Tensor]
CHUNK_BYTES = 16 << 20  # what Ray Data hands the streaming path at a time


def rows(batch: Batch, index) -> Batch:
    """The same rows (a slice or an index tensor) of every tensor in the batch."""
    return {key: values[index] for key, values in batch.items()}


def tensors(arrays: dict[str, np.ndarray], device: torch.device | None = None) -> Batch:
    """Numpy arrays as tensors of the same dtypes, copied (the object store's are read-only)."""
    return {key: torch.tensor(values, device=device) for key, values in arrays.items()}


class InMemory:
    """One shard as a batch and its labels; every epoch is a seeded permutation sliced into batches."""

    def __init__(self, x: Batch, y: torch.Tensor):
        self.x, self.y = x, y

    @classmethod
    def from_arrays(cls, arrays: tuple, device: torch.device) -> InMemory:
        """Numpy (batch, y) as handed out by the object store, copied once into tensors."""
        x, y = arrays
        return cls(tensors(x, device), torch.tensor(y, device=device))

    def part(self, rank: int, world_size: int) -> InMemory:
        """Every world_size-th row from `rank`: ranks split the val set exactly, no row dropped or repeated."""
        return self.take(slice(rank, None, world_size))

    def take(self, index) -> InMemory:
        return InMemory(rows(self.x, index), self.y[index])

    def __len__(self) -> int:
        return len(self.y)

    def batches(self, batch_size: int, *, seed: int | None = None) -> Iterator[tuple[Batch, torch.Tensor]]:
        """`seed` shuffles (training); None keeps the order (evaluation)."""
        if seed is None:
            for start in range(0, len(self), batch_size):
                yield rows(self.x, slice(start, start + batch_size)), self.y[start : start + batch_size]
            return
        order = torch.randperm(len(self), generator=torch.Generator().manual_seed(seed)).to(self.y.device)
        for start in range(0, len(self), batch_size):
            index = order[start : start + batch_size]
            yield rows(self.x, index), self.y[index]


class Streaming:
    """A Ray Data shard read afresh every epoch, for data too large to keep.

    Ray Data costs about 1 ms of Python per batch it hands out, whatever the batch's size: at training batch
    sizes that stalled a compute-bound step by 17%. So it hands out chunks of about CHUNK_BYTES, which are
    shuffled and sliced here (`rebatch`): training sees a local shuffle over each chunk's window."""

    def __init__(self, shard, device: torch.device, *, row_bytes: int):
        self.shard, self.device = shard, device
        self.chunk_rows = max(1, CHUNK_BYTES // row_bytes)

    def batches(self, batch_size: int, *, seed: int | None = None) -> Iterator[tuple[Batch, torch.Tensor]]:
        """`seed` shuffles (training); None keeps the order (evaluation)."""
        chunks = self.shard.iter_batches(batch_size=max(self.chunk_rows, batch_size), batch_format="numpy")
        yield from rebatch(map(from_block, chunks), batch_size, seed=seed, device=self.device)


def to_device(tensor: torch.Tensor, device: torch.device) -> torch.Tensor:
    """To a GPU through pinned host memory, without waiting for the copy (the step that uses it queues after it on
    the same stream); on the CPU, the tensor itself."""
    if device.type != "cuda":
        return tensor
    return tensor.pin_memory().to(device, non_blocking=True)


def cat(first: Batch, second: Batch) -> Batch:
    return {key: torch.cat([values, second[key]]) for key, values in first.items()}


def rebatch(
    chunks: Iterable[tuple[dict[str, np.ndarray], np.ndarray]],
    batch_size: int,
    *,
    seed: int | None,
    device: torch.device,
) -> Iterator[tuple[Batch, torch.Tensor]]:
    """Batches of `batch_size` rows from a stream of (batch, y) chunks of any size: each chunk is shuffled by
    `seed` (None: kept in order), rows left over at a chunk's end lead the next chunk's first batch, and only
    the stream's last batch may be short. Equal rows give equal batch counts, so DDP ranks stay in step."""
    generator = None if seed is None else torch.Generator().manual_seed(seed)
    carry_x = carry_y = None
    for chunk_x, chunk_y in chunks:
        x, y = tensors(chunk_x), torch.tensor(chunk_y)
        if generator is not None:
            order = torch.randperm(len(y), generator=generator)
            x, y = rows(x, order), y[order]
        if carry_y is not None:
            x, y = cat(carry_x, x), torch.cat([carry_y, y])
        whole = len(y) - len(y) % batch_size
        on_device_x = {key: to_device(values[:whole], device) for key, values in x.items()}
        on_device_y = to_device(y[:whole], device)
        for start in range(0, whole, batch_size):
            yield rows(on_device_x, slice(start, start + batch_size)), on_device_y[start : start + batch_size]
        carry_x, carry_y = rows(x, slice(whole, None)), y[whole:]
    if carry_y is not None and len(carry_y):
        yield {key: values.to(device) for key, values in carry_x.items()}, carry_y.to(device)


def open_split(
    name: str,
    *,
    arrays: dict | None,
    device: torch.device,
    rank: int,
    world_size: int,
    row_bytes: int,
    equal: bool,
    shard,
) -> InMemory | Streaming:
    """This worker's part of split `name`: from the object store when the driver handed out arrays, else
    Ray Data's shard. `equal` gives every rank the same number of rows (DDP steps in lockstep; at most
    world_size - 1 rows are left out of an epoch, as Ray Data's equal split does); otherwise the rows are
    dealt out exactly (evaluation, whose sums are all-reduced). `shard(name)` gives the Ray Data iterator."""
    import ray

    if arrays is None:
        return Streaming(shard(name), device, row_bytes=row_bytes)
    held = arrays[name]  # an object ref, or (x, y) themselves when training in this process (training.local)
    whole = InMemory.from_arrays(held if isinstance(held, tuple) else ray.get(held), device)
    if not equal:
        return whole.part(rank, world_size)
    per_rank = len(whole) // world_size
    return whole.take(slice(rank * per_rank, (rank + 1) * per_rank))
