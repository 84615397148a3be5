"""The deploy step: the only module besides the CLI that reaches into `serving`."""

from __future__ import annotations

from pipelines import console
from pipelines.cluster import runtime
from pipelines.config import KilnConfig
from pipelines.errors import ConfigError
from pipelines.model import checkpoint
from pipelines.tracking import mlflow_store, registry


def ingress_env(cfg: KilnConfig) -> dict[str, str]:
    """What the endpoint's ingress needs in the environment of every Ray process (set before Ray starts)."""
    from serving import ingress

    return ingress.environment(cfg)


def check_token(cfg: KilnConfig) -> None:
    """serve.auth: token needs its token before anything starts: a missing or unreadable one is a ConfigError."""
    from serving import auth

    auth.read_token(cfg.serve)


def check_servable(cfg: KilnConfig, ref: str) -> registry.ServingTarget:
    """What `ref` serves, once its version loads as a replica will load it: a missing model is ModelNotFound, a
    version whose files changed since registration a DataError (exit 2), both before anything starts."""
    target = registry.serving_target(cfg, ref)
    mlflow_store.load_checked(
        cfg.tracking_uri, target.name, target.version, factory=checkpoint.trusted_factory(cfg.model)
    )
    return target


def start_serving(cfg: KilnConfig, ref: str, checked: registry.ServingTarget | None = None) -> str:
    """Serve a registered model of this store. `NAME@ALIAS` follows the alias (the endpoint switches versions
    when it moves); `NAME/VERSION` stays pinned. `checked`: check_servable's answer for `ref`, when the caller
    already has it (kiln serve checks before the runtime starts). Returns the endpoint's base URL."""
    from serving.app import app_name, deploy, live_apps

    target = checked or check_servable(cfg, ref)
    application = app_name(target.name, cfg.tracking_uri)
    if application in live_apps() and application not in runtime.deployed_apps():
        raise ConfigError(
            f"serve: {target.name} of this store is already served on this cluster (application {application}), "
            "by another Kiln process; use that endpoint, or stop it (Ctrl-C where it runs) and serve again"
        )
    runtime.started_app(application)  # before it starts: a failed start is cleaned up too
    url = deploy(cfg, name=target.name, alias=target.alias, version=None if target.alias else target.version)
    follows = f" (follows @{target.alias})" if target.alias else ""
    console.say(f"  serving {target.name} v{target.version}{follows} at {url}")
    return url
