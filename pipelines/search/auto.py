"""`tune.search_space: auto`: a search space built from what the data check found (column kinds, rows, task,
colour images), so a table, a text set and an image folder each get ranges that fit them. Keys the user writes
beside `auto: true` win, key by key. Pure: no Ray.

Where the ranges come from: the learning rate spans the decade around AdamW's usual 1e-3 (images a little higher:
digits at 16-64 px reached 0.97-0.98 at 3e-3 against 0.95-0.96 at 1e-3 in training.local; text bags, whose
embeddings see few updates each, did best at 1e-2 on airline tweets and product reviews); weight decay from none
to 0.1 (AdamW's paper searched 1e-4..1e-1 scaled); head widths grow with the rows; batch sizes keep at least 10
steps an epoch so warm-up and the cosine have steps to act on.
"""

from __future__ import annotations

from typing import Any

from pipelines.errors import ConfigError

AUTO = "auto"
IMAGE_ONLY = ("model.image_channels", "model.image_pool", "model.image_standardize")
TEXT_ONLY = ("model.text_encoder", "model.embedding_dim", "model.text_layers", "model.text_heads")


def is_auto(space: Any) -> bool:
    return space == AUTO or (isinstance(space, dict) and space.get(AUTO) is True)


def written(space: Any) -> dict[str, Any]:
    """The domains the user wrote (none for a bare `auto`)."""
    return {} if space == AUTO else {k: v for k, v in space.items() if k != AUTO}


TRANSFORMER_WORDS = 64  # texts longer than this (90th percentile) search the bag alone


def build(
    types: dict[str, str], *, rows: int, task: str, colour: bool = False, text_words: int = 0
) -> dict[str, dict[str, Any]]:
    """The space for data with these feature column kinds and row count; `text_words`: the longest text column's
    90th-percentile word count (a Transformer over long texts costs minutes an epoch on a few CPU cores)."""
    kinds = set(types.values())
    images, texts = "image" in kinds, "text" in kinds
    train_rows = int(rows * 0.7)
    space: dict[str, dict[str, Any]] = {
        "train.lr": {"loguniform": [1e-3, 1e-2] if images else [1e-3, 2e-2] if texts else [3e-4, 1e-2]},
        "train.weight_decay": {"loguniform": [1e-4, 1e-1]},
    }
    if train_rows >= 20_000:
        space["model.hidden"] = {"choice": [[128, 64], [256, 128], [512, 256]]}
    elif images:
        space["model.hidden"] = {"choice": [[128], [128, 64]]}
    else:
        space["model.hidden"] = {"choice": [[64], [128, 64], [256, 128]]}
    space["model.dropout"] = {"choice": [0.0, 0.1, 0.3]}
    batches = [b for b in (32, 64, 128, 256) if train_rows / b >= 10] or [32]
    space["train.batch_size"] = {"choice": batches[:3]}
    if images:
        space["model.image_channels"] = {"choice": [[16, 32], [32, 64], [16, 32, 64]]}
        if colour:
            space["model.image_standardize"] = {"choice": ["dataset", "per_image"]}
    if texts:
        if text_words <= TRANSFORMER_WORDS:
            space["model.text_encoder"] = {"choice": ["bag", "transformer"]}
        space["model.embedding_dim"] = {"choice": [64, 128]}
    return space


def resolve(
    space: Any, types: dict[str, str], *, rows: int, task: str, colour: bool = False, text_words: int = 0
) -> dict[str, Any]:
    """`tune.search_space` with `auto` filled in for this data; the user's own keys win. ConfigError naming the
    key when a key the user wrote cannot apply to this data (image settings without an image column...)."""
    mine = written(space)
    kinds = set(types.values())
    for key in mine:
        if key in IMAGE_ONLY and "image" not in kinds:
            raise ConfigError(f"tune.search_space.{key}: this data has no image column")
        if key in TEXT_ONLY and "text" not in kinds:
            raise ConfigError(f"tune.search_space.{key}: this data has no text column")
    if not is_auto(space):
        return space
    return {**build(types, rows=rows, task=task, colour=colour, text_words=text_words), **mine}


def describe(space: dict[str, Any]) -> list[str]:
    """One line a key, as `kiln validate` prints the space it chose."""
    return [f"  {key}: {domain}" for key, domain in space.items()]
