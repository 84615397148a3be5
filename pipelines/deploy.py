"""The deploy step: the only module besides the CLI that reaches into `serving`."""

from __future__ import annotations

from pipelines import console, registry, runtime
from pipelines.config import KilnConfig


def ingress_env(cfg: KilnConfig) -> dict[str, str]:
    """What the endpoint's ingress needs in the environment of every Ray process (set before Ray starts)."""
    from serving import ingress

    return ingress.environment(cfg)


def start_serving(cfg: KilnConfig, ref: str) -> str:
    """Serve a registered model of this store. `NAME@ALIAS` follows the alias (the endpoint switches versions
    when it moves); `NAME/VERSION` stays pinned. Returns the endpoint's base URL."""
    from serving.app import app_name, deploy

    target = registry.serving_target(cfg, ref)  # fails early, naming what is missing
    runtime.started_app(app_name(target.name))  # before it starts: a failed start is cleaned up too
    url = deploy(cfg, name=target.name, alias=target.alias, version=None if target.alias else target.version)
    follows = f" (follows @{target.alias})" if target.alias else ""
    console.say(f"  serving {target.name} v{target.version}{follows} at {url}")
    return url
