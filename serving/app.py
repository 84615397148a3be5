"""The Ray Serve deployment: a Predictor behind dynamic batching, following a registry alias. Routes: routes.py."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import re
import time
from typing import Any

import numpy as np
import pandas as pd
from ray import serve

from pipelines.config import KilnConfig, ServeConfig
from pipelines.errors import ConfigError
from pipelines.model import checkpoint
from pipelines.tracking import integrity, registry
from serving import auth
from serving.limits import answered_hosts
from serving.metrics import Metrics
from serving.predictor import Predictor, alias_version, predict_batches
from serving.routes import build_api

APP_PREFIX = "kiln-"  # each endpoint is its own Serve application, named after its model and its store


def app_name(model_name: str, store_uri: str) -> str:
    """The Serve application of `model_name`'s endpoint from the store at `store_uri`: deploying it again replaces
    only it. The store's short hash keeps two users' models of one name on a shared cluster apart (one's
    endpoint replaced, or deleted by Ctrl-C, the other's)."""
    store = hashlib.sha256(store_uri.encode()).hexdigest()[:8]
    return f"{APP_PREFIX}{re.sub(r'[^A-Za-z0-9_.-]', '-', model_name)}-{store}"


RETRY_FAILED_LOAD_S = 30.0
logger = logging.getLogger("ray.serve")


@serve.deployment
@serve.ingress()
class ModelEndpoint:
    """Serves `models:/NAME@ALIAS` (following the alias) or a pinned `models:/NAME/VERSION`, of one store."""

    def __init__(
        self,
        *,
        tracking_uri: str,
        name: str,
        alias: str | None,
        version: int | None,
        serve_config: dict[str, Any],
        token_sha256: str | None = None,
        factory: str | None = None,
        signing_key: str | None = None,
    ):
        self.cfg = ServeConfig.model_validate(serve_config)
        self.factory = factory  # the user factory the serving config trusts (checkpoint.trusted_factory), if any
        self.token_sha256 = token_sha256
        # The deploying process's key (hex): a replica on another node checks signatures without a key file.
        self.signing_key = bytes.fromhex(signing_key) if signing_key else None
        self.tracking_uri, self.name, self.alias = tracking_uri, name, alias
        self.source = f"models:/{name}@{alias}" if alias else f"models:/{name}/{version}"
        if alias:  # each replica, at its own start: one added or restarted later serves the alias's version now
            version = alias_version(tracking_uri, name, alias)
        self.predictor = self._load(version)
        context = serve.get_replica_context()
        self.metrics = Metrics(model=name, replica=context.replica_id.unique_id if context else "")
        self.metrics.set_version(version)
        self.forward.set_max_batch_size(self.cfg.max_batch_size)
        self.forward.set_batch_wait_timeout_s(self.cfg.batch_wait_timeout_s)
        self._follower: asyncio.Task | None = None
        try:  # on the loop that serves requests; else the first health check starts it
            self._follower = asyncio.get_running_loop().create_task(self._follow_alias()) if alias else None
        except RuntimeError:
            pass

    def __serve_build_asgi_app__(self):
        return build_api(
            self,
            max_body_bytes=self.cfg.max_body_bytes,
            timeout_s=self.cfg.request_timeout_s,
            token_sha256=self.token_sha256,
            max_rows=self.cfg.max_rows,
            hosts=answered_hosts(self.cfg.host, self.cfg.allowed_hosts),
        )

    def _load(self, version: int) -> Predictor:
        """Load fully, first forward pass included, before the version may answer anyone."""
        predictor = Predictor.from_registry(
            self.tracking_uri,
            self.name,
            version,
            factory=self.factory,
            key=self.signing_key,
            max_image_pixels=self.cfg.max_image_pixels,
            gpu=self.cfg.num_gpus > 0,
            max_request_pixels=self.cfg.max_request_pixels,
        )
        predictor.model.predict(pd.DataFrame([[None] * len(predictor.features)], columns=predictor.features))
        return predictor

    @serve.batch(max_batch_size=32, batch_wait_timeout_s=0.002)  # the config's values are set in __init__
    async def forward(self, items: list[tuple[Predictor, np.ndarray]]) -> list[np.ndarray]:
        """Validated requests that arrived together: one forward pass (per model, during a switch)."""
        self.metrics.observe_batch(requests=len(items), rows=sum(len(rows) for _, rows in items))
        return await asyncio.to_thread(predict_batches, items, max_rows=self.cfg.max_rows)

    async def check_health(self) -> None:
        if self.alias and self._follower is None:
            self._follower = asyncio.get_running_loop().create_task(self._follow_alias())
        if self._follower is not None and self._follower.done():
            raise RuntimeError(f"{self.source}: the alias follower stopped; restarting the replica")

    async def __del__(self):
        """Serve calls this on graceful shutdown: stop polling before the thread pool goes away."""
        if self._follower is not None:
            self._follower.cancel()

    async def _follow_alias(self) -> None:
        """Poll the alias; load a new version fully, then swap one reference. Requests that already took
        the old Predictor finish on it, and no request ever waits for a load."""
        retry_after: dict[int, float] = {}  # a version that failed to load is retried, but not every tick
        while True:
            await asyncio.sleep(self.cfg.reload_interval_s)
            version = None
            try:
                version = await asyncio.to_thread(alias_version, self.tracking_uri, self.name, self.alias)
                if version == self.predictor.version or time.monotonic() < retry_after.get(version, 0):
                    continue
                previous = self.predictor.version
                self.predictor = await asyncio.to_thread(self._load, version)
                self.metrics.set_version(version)
                self.metrics.reloaded("switched")
                logger.info(f"{self.source}: v{previous} -> v{version}")
            except Exception as err:  # keep answering with the loaded version
                if version is not None:
                    retry_after[version] = time.monotonic() + RETRY_FAILED_LOAD_S
                self.metrics.reloaded("failed")
                logger.warning(f"{self.source}: could not switch to v{version}: {type(err).__name__}: {err}")


def deployment_options(cfg: ServeConfig) -> dict[str, Any]:
    """Replicas, CPUs and queue limits from the config, as Serve's deployment options."""
    options: dict[str, Any] = {
        "ray_actor_options": {"num_cpus": cfg.num_cpus, "num_gpus": cfg.num_gpus},
        "max_ongoing_requests": cfg.max_ongoing_requests,
        "max_queued_requests": cfg.max_queued_requests,
    }
    if cfg.autoscaling is not None:
        options["autoscaling_config"] = cfg.autoscaling.model_dump()
    else:
        options["num_replicas"] = cfg.num_replicas
    return options


def live_apps() -> set[str]:
    """The Serve applications running in the connected Ray runtime (none when Serve is not running)."""
    return set(serve.status().applications)


def deploy(cfg: KilnConfig, *, name: str, alias: str | None = None, version: int | None = None) -> str:
    """Serve `models:/name@alias` (following the alias) or `models:/name/version` (pinned) from cfg's store,
    on cfg.serve.host:port under serve.route_prefix, as the application `app_name(name, store)`; return the URL.
    Starts Serve in the connected Ray runtime; another application's route is never taken over."""
    if (alias is None) == (version is None):
        raise ValueError("deploy: give exactly one of alias (follows the alias) or version (pinned)")
    s = cfg.serve
    # HeadOnly: one ingress at serve.host:port. On several nodes of one host (the local cluster) one proxy per
    # node would fight over the same port.
    tls = {"ssl_certfile": s.tls_certfile, "ssl_keyfile": s.tls_keyfile} if s.tls_certfile else {}
    serve.start(
        proxy_location="HeadOnly",
        http_options={"host": s.host, "port": s.port, "request_timeout_s": s.request_timeout_s, **tls},
    )
    application = app_name(name, cfg.tracking_uri)
    try:
        serve.run(
            bind(cfg, name=name, alias=alias, version=version),
            name=application,
            route_prefix=s.route_prefix,
            blocking=False,
        )
    except Exception as err:  # Serve refuses a route another application holds (a shared cluster)
        if "is being used by application" not in str(err):
            raise
        raise ConfigError(
            f"serve.route_prefix: {s.route_prefix!r} is taken on this cluster by another endpoint "
            f"({' '.join(str(err).split())[:200]}); set serve.route_prefix to a free path, e.g. "
            f"/{name}"
        ) from None
    url = f"{s.scheme}://{s.host}:{s.port}{s.route_prefix.rstrip('/')}"
    wait_until_ready(url, verify=s.verify)
    return url


def bind(cfg: KilnConfig, *, name: str, alias: str | None, version: int | None):
    """The endpoint's application: its deployment options and the model it serves."""
    token = auth.read_token(cfg.serve)  # the replicas get its sha256 only
    return ModelEndpoint.options(**deployment_options(cfg.serve)).bind(
        tracking_uri=cfg.tracking_uri,
        name=name,
        alias=alias,
        version=version,
        serve_config=cfg.serve.model_dump(),
        token_sha256=auth.digest(token) if token else None,
        factory=checkpoint.trusted_factory(cfg.model),
        signing_key=integrity.signing_key().hex(),
    )


def wait_until_ready(url: str, timeout_s: float = 60.0, *, verify: bool | str = True) -> None:
    """The deployment is up; wait until the ingress in front of it answers too (HAProxy starts on its own)."""
    import requests

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            # The health routes are open without the token.
            if requests.get(f"{url}/v2/health/ready", timeout=5, verify=verify).status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(0.25)
    raise RuntimeError(
        f"serve: the endpoint at {url} did not answer within {timeout_s:g} s (is serve.port taken by another program?)"
    )


def app_from_env(args: dict[str, str]):
    """Application builder for Serve config files and KubeRay's RayService (`import_path:
    serving.app:app_from_env`). Args: `model` (NAME, NAME@ALIAS or NAME/VERSION), optional `config` (a Kiln
    YAML for serve.* and the store), `tracking_uri` and `auth` (token). Does not start Serve: the caller's config
    does, and binds where its http_options say, which Kiln cannot see; so the endpoint built here always needs
    the bearer token (in $serve.token_env of the process that builds it)."""
    from pipelines.config import load_config

    overrides = [f"tracking.uri={args['tracking_uri']}"] if args.get("tracking_uri") else []
    overrides += [f"serve.auth={args['auth']}"] if args.get("auth") else []
    cfg = load_config(args.get("config"), overrides)
    if cfg.serve.auth != "token":  # with it, bind() below refuses a missing token (auth.read_token)
        raise ConfigError(
            "serve.auth: an application a Serve config or RayService starts binds where its http_options say, "
            "which Kiln cannot check; give it `auth: token` in its args and the token in "
            f"${cfg.serve.token_env} (a Kubernetes secret)"
        )
    target = registry.serving_target(cfg, args.get("model") or registry.champion_ref(cfg))
    return bind(cfg, name=target.name, alias=target.alias, version=None if target.alias else target.version)
