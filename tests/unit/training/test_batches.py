"""The in-memory shard: every row once per epoch, a seeded order, exact val parts across ranks. The streaming
path's rebatching of Ray Data chunks: the same guarantees whatever the chunk sizes. A batch's tensors (dense
float32, int64 ids, uint8 pixels) move together and keep their types."""

import numpy as np
import torch

from pipelines.data.preprocessing import Slot, row_bytes
from pipelines.training.batches import InMemory, rebatch


def typed(rows: np.ndarray) -> dict[str, np.ndarray]:
    """A batch whose every tensor holds the row's number: dense float32, token ids int64, pixels uint8."""
    return {
        "x": rows.astype(np.float32)[:, None],
        "text:t": np.repeat(rows.astype(np.int64)[:, None], 3, axis=1),
        "image:i": np.broadcast_to(rows.astype(np.uint8)[:, None, None, None], (len(rows), 1, 2, 2)).copy(),
    }


def rows_agree(x: dict[str, torch.Tensor], y: torch.Tensor) -> bool:
    """Every tensor of the batch holds its label's row, in its own dtype."""
    return (
        torch.equal(x["x"].squeeze(1).long(), y)
        and torch.equal(x["text:t"][:, 2], y)
        and torch.equal(x["image:i"][:, 0, 1, 1].long(), y)
        and (x["x"].dtype, x["text:t"].dtype, x["image:i"].dtype) == (torch.float32, torch.int64, torch.uint8)
    )


def shard(rows: int = 10) -> InMemory:
    return InMemory.from_arrays((typed(np.arange(rows)), np.arange(rows)), torch.device("cpu"))


def test_an_epoch_visits_every_row_once_in_batches_of_the_asked_size():
    batches = list(shard(10).batches(4, seed=3))
    assert [len(y) for _, y in batches] == [4, 4, 2]
    assert sorted(torch.cat([y for _, y in batches]).tolist()) == list(range(10))
    assert all(rows_agree(x, y) for x, y in batches), "features stay with their labels"


def test_the_same_seed_gives_the_same_order_and_another_seed_another():
    def order(seed):
        return torch.cat([y for _, y in shard(50).batches(8, seed=seed)]).tolist()

    assert order(1) == order(1)
    assert order(1) != order(2)


def test_evaluation_keeps_the_order():
    assert torch.cat([y for _, y in shard(7).batches(3)]).tolist() == list(range(7))


def test_ranks_split_the_val_set_exactly():
    parts = [shard(11).part(rank, 3) for rank in range(3)]
    rows = sorted(v for p in parts for v in p.y.tolist())
    assert rows == list(range(11))


def test_row_bytes_count_each_tensor_in_its_own_type_and_an_int64_label():
    slots = [
        Slot("text", 2, 10, column="t"),  # 10 int64 ids
        Slot("image", 12, 3 * 8 * 8, channels=3, size=8, column="i"),  # 192 uint8 pixels
        Slot("category", 204, 1, column="c"),  # one int64 level id
    ]
    assert row_bytes(205 + 2, slots) == 4 * 4 + 10 * 8 + 192 + 8 + 8  # 4 dense float32 columns


def chunks_of(sizes: list[int]) -> list[tuple[dict[str, np.ndarray], np.ndarray]]:
    """Consecutive rows 0..sum(sizes)-1 cut into chunks of `sizes`; each feature equals its label."""
    edges = np.cumsum([0, *sizes])
    bounds = zip(edges[:-1], edges[1:], strict=True)
    return [(typed(np.arange(a, b)), np.arange(a, b)) for a, b in bounds]


def test_rebatching_chunks_of_any_size_gives_full_batches_and_one_short_last():
    batches = list(rebatch(chunks_of([5, 3, 9, 1]), 4, seed=0, device=torch.device("cpu")))
    assert [len(y) for _, y in batches] == [4, 4, 4, 4, 2]
    assert sorted(torch.cat([y for _, y in batches]).tolist()) == list(range(18)), "every row exactly once"
    assert all(rows_agree(x, y) for x, y in batches), "features stay with their labels, in their types"
    assert all(y.dtype == torch.long for _, y in batches)


def test_equal_rows_in_different_chunks_give_ranks_the_same_number_of_batches():
    counts = {
        len(list(rebatch(chunks_of(sizes), 4, seed=1, device=torch.device("cpu"))))
        for sizes in ([12, 12], [7, 10, 7], [24], [1] * 24)
    }
    assert counts == {6}, "DDP ranks must step the same number of times"


def test_rebatching_shuffles_by_seed_and_keeps_the_order_without_one():
    def order(seed):
        return torch.cat([y for _, y in rebatch(chunks_of([20, 20]), 8, seed=seed, device=torch.device("cpu"))])

    assert torch.equal(order(3), order(3))
    assert not torch.equal(order(3), order(4))
    assert order(None).tolist() == list(range(40))


def test_nothing_to_read_gives_no_batches():
    assert list(rebatch([], 4, seed=0, device=torch.device("cpu"))) == []
