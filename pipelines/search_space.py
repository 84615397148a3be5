"""The search space as data: parse domains, check they fit the config, apply a sampled trial.

Pure functions; `tune.py` turns parsed domains into Ray Tune objects.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

if TYPE_CHECKING:
    from pipelines.config import KilnConfig


@dataclass(frozen=True)
class Domain:
    kind: str  # choice | uniform | loguniform | randint
    args: tuple[Any, ...]

    def examples(self) -> list[Any]:
        """Values at the edges of the domain, used to check every sample will validate."""
        if self.kind == "choice":
            return list(self.args)
        lo, hi = self.args
        return [lo, hi - 1] if self.kind == "randint" else [lo, hi]


def parse_domain(key: str, spec: Any) -> Domain:
    where = f"tune.search_space.{key}"
    if not isinstance(spec, dict) or len(spec) != 1:
        raise ValueError(
            f"{where}: expected one of {{choice: [...]}}, {{uniform: [lo, hi]}}, "
            f"{{loguniform: [lo, hi]}}, {{randint: [lo, hi]}} (got {spec!r})"
        )
    (kind, args), = spec.items()
    if kind == "choice":
        if not isinstance(args, list) or not args:
            raise ValueError(f"{where}: choice needs a non-empty list (got {args!r})")
        return Domain(kind, tuple(args))
    if kind not in ("uniform", "loguniform", "randint"):
        raise ValueError(f"{where}: unknown domain {kind!r}; use choice, uniform, loguniform or randint")
    if not (isinstance(args, list) and len(args) == 2):
        raise ValueError(f"{where}: {kind} needs [low, high] (got {args!r})")
    try:
        lo, hi = (int(a) if kind == "randint" else float(a) for a in args)
    except (TypeError, ValueError):
        raise ValueError(f"{where}: {kind} bounds must be numbers (got {args!r})") from None
    if not lo < hi or not all(math.isfinite(v) for v in (lo, hi)):
        raise ValueError(f"{where}: {kind} needs low < high (got {args!r})")
    if kind == "loguniform" and lo <= 0:
        raise ValueError(f"{where}: loguniform needs low > 0 (got {args!r})")
    return Domain(kind, (lo, hi))


def parse_search_space(space: dict[str, Any]) -> dict[str, Domain]:
    return {key: parse_domain(key, spec) for key, spec in space.items()}


def apply_sample(cfg: KilnConfig, sample: dict[str, Any]) -> KilnConfig:
    """The config of one trial: the base config with each sampled dotted path set."""
    from pipelines.config import KilnConfig, set_dotted

    raw = cfg.model_dump()
    for key, value in sample.items():
        set_dotted(raw, key, value)
    return KilnConfig.model_validate(raw)


def check_search_space(cfg: KilnConfig) -> None:
    """Every key names a real config value and every edge of its domain validates."""
    from pipelines.config import KilnConfig, describe_error, set_dotted

    domains = parse_search_space(cfg.tune.search_space)
    base = cfg.model_dump()
    # Probe configs carry no search space of their own (and so a single sample) to avoid recursion.
    base["tune"].update(search_space={}, num_samples=1)
    for key, domain in domains.items():
        if key.startswith("tune.") or not _has_path(base, key):
            raise ValueError(f"tune.search_space.{key}: not a key of this config")
        for value in domain.examples():
            raw = copy.deepcopy(base)
            set_dotted(raw, key, value)
            try:
                KilnConfig.model_validate(raw)
            except ValidationError as err:
                raise ValueError(f"tune.search_space.{key}: {value!r} is invalid: {describe_error(err)}") from None


def _has_path(tree: dict[str, Any], dotted: str) -> bool:
    node: Any = tree
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return False
        node = node[part]
    return True
