"""The in-memory shard: every row once per epoch, a seeded order, exact val parts across ranks."""

import torch

from pipelines.batches import InMemory, shard_bytes


def shard(rows: int = 10) -> InMemory:
    return InMemory(torch.arange(rows, dtype=torch.float32).unsqueeze(1), torch.arange(rows))


def test_an_epoch_visits_every_row_once_in_batches_of_the_asked_size():
    batches = list(shard(10).batches(4, seed=3))
    assert [len(y) for _, y in batches] == [4, 4, 2]
    assert sorted(torch.cat([y for _, y in batches]).tolist()) == list(range(10))
    assert all(torch.equal(x.squeeze(1).long(), y) for x, y in batches), "features stay with their labels"


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


def test_shard_bytes_counts_float32_features_and_int64_labels():
    assert shard_bytes(1000, 64) == 1000 * (64 * 4 + 8)
