"""The model shapes a search will train: the search-space keys that change what a step costs. Pure: no torch.

A search over `model.text_encoder: {choice: [bag, transformer]}` trains two models whose epochs differ a
hundredfold; pricing the search at the base config's epoch says nothing true. `kiln plan` prices each shape
here and the search at their mean (random sampling draws every choice equally often).
"""

from __future__ import annotations

import itertools
import random
from typing import Any

from pipelines.config import KilnConfig
from pipelines.search.space import Domain, parse_search_space

COSTLESS = ("model.dropout",)  # model keys that change no tensor's shape
MAX_SHAPES = 6


def shape_keys(space: dict[str, Domain]) -> list[str]:
    """The searched keys a step's cost depends on: the model's (but dropout) and the batch size."""
    return sorted(k for k in space if (k.startswith("model.") and k not in COSTLESS) or k == "train.batch_size")


def representatives(domain: Domain) -> list[Any]:
    """The values a shape is priced at: every choice; the middle of a numeric range."""
    if domain.kind == "choice":
        return list(domain.args)
    lo, hi = domain.args
    if domain.kind == "randint":
        return [(lo + hi - 1) // 2]
    return [(lo * hi) ** 0.5 if domain.kind == "loguniform" else (lo + hi) / 2]


def shape_samples(cfg: KilnConfig, limit: int = MAX_SHAPES) -> list[dict[str, Any]]:
    """Each shape as a partial sample (`{}` when the search keeps the base config's shape); past `limit`
    combinations, `limit` of them drawn with a fixed seed, so the plan is the same on every call."""
    space = parse_search_space(cfg.tune.search_space)
    keys = shape_keys(space)
    combos = [
        dict(zip(keys, values, strict=True)) for values in itertools.product(*(representatives(space[k]) for k in keys))
    ]
    if len(combos) > limit:
        combos = random.Random(0).sample(combos, limit)
    return combos or [{}]


def describe(sample: dict[str, Any]) -> str:
    return ", ".join(f"{k.removeprefix('model.')}={v}".replace(" ", "") for k, v in sample.items()) or "base config"
