"""The endpoint's bearer token (serve.auth: token): read from the environment or a file only the user can read,
never from the config; replicas keep only its sha256."""

from __future__ import annotations

import hashlib
import hmac
import os
import stat
from pathlib import Path

from pipelines.config import ServeConfig
from pipelines.errors import ConfigError

MIN_LENGTH = 16
OPEN_PATHS = frozenset({"/healthz", "/v2/health/live", "/v2/health/ready"})  # load balancers probe these


def read_token(cfg: ServeConfig) -> str | None:
    """The token when serve.auth is token: $serve.token_env, else serve.token_file (mode 0600 or stricter)."""
    if cfg.auth == "none":
        return None
    token = os.environ.get(cfg.token_env, "").strip()
    if not token and cfg.token_file:
        path = Path(cfg.token_file).expanduser()
        if not path.is_file():
            raise ConfigError(f"serve.token_file: {path} not found")
        mode = stat.S_IMODE(path.stat().st_mode)
        if mode & 0o077:
            raise ConfigError(f"serve.token_file: {path} is readable by others (mode {mode:o}); chmod 600 it")
        token = path.read_text().strip()
    if not token:
        raise ConfigError(
            f"serve.auth: token, but ${cfg.token_env} is empty and serve.token_file is not set; "
            f"e.g. export {cfg.token_env}=$(python -c 'import secrets; print(secrets.token_urlsafe())')"
        )
    if len(token) < MIN_LENGTH:
        raise ConfigError(f"serve.auth: the token has {len(token)} characters; use at least {MIN_LENGTH}")
    return token


def digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def authorized(header: str | None, token_sha256: str) -> bool:
    """`Authorization: Bearer <token>` whose sha256 is the endpoint's (compared in constant time)."""
    scheme, _, token = (header or "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return False
    return hmac.compare_digest(digest(token.strip()), token_sha256)


def client_headers(cfg: ServeConfig | None = None) -> dict[str, str]:
    """What a Kiln client sends: the bearer token when $serve.token_env holds one."""
    token = os.environ.get((cfg or ServeConfig()).token_env, "").strip()
    return {"Authorization": f"Bearer {token}"} if token else {}
