"""The search space as data: `tune.search_space`'s domains, parsed. Pure: no Ray, no config.

The config checks every domain against itself when it is loaded (config.check_search_space); the tuner
turns domains into Ray Tune's (to_tune_domain, below); a trial's config is `cfg.with_sample(sample)`.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

CONTINUOUS = ("uniform", "loguniform")  # the kinds pbt perturbs


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
    ((kind, args),) = spec.items()
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


def encoded(value: Any) -> Any:
    """A choice's value as a sampler that takes only plain values (Optuna's categorical) sees it: a list or a
    mapping as compact JSON text, anything else as it is."""
    return json.dumps(value, separators=(",", ":")) if isinstance(value, list | tuple | dict) else value


def decoded(domain: Domain, value: Any) -> Any:
    """The choice `encoded` turned into `value`, or `value` itself."""
    if domain.kind == "choice" and isinstance(value, str):
        for arg in domain.args:
            if not isinstance(arg, str) and encoded(arg) == value:
                return arg
    return value


def to_tune_domain(domain: Domain, *, plain_choices: bool = False):
    """Ray Tune's domain; `plain_choices`: a choice's lists and mappings as JSON text (space.encoded), for Optuna,
    whose categorical takes plain values only (cfg.with_sample decodes them)."""
    from ray import tune

    if domain.kind == "choice":
        return tune.choice([encoded(v) for v in domain.args] if plain_choices else list(domain.args))
    return getattr(tune, domain.kind)(*domain.args)
