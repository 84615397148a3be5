"""Free loopback ports, for what Kiln starts on this machine (a dashboard, Serve's side listeners, a probe).

A port is picked now and bound later (Serve's HAProxy opens its side listeners a minute after the runtime starts),
so it is drawn from below the kernel's ephemeral range: a port from that range, free when picked, can become the
local end of any outgoing connection meanwhile, and Ray's processes open many. That happened once in a `make test`:
HAProxy's metrics listener found its port taken ("cannot bind socket (Address already in use)") and the endpoint
never started. Ray's workers bind 10002-19999 by default, so the draw starts above them.
"""

from __future__ import annotations

import random
import socket
from pathlib import Path

RAY_WORKER_PORTS_END = 19999  # Ray's default max_worker_port
EPHEMERAL_RANGE = Path("/proc/sys/net/ipv4/ip_local_port_range")
DRAWS = 200


def ephemeral_start() -> int:
    """The first port the kernel hands out for outgoing connections (Linux's file; 32768 where there is none,
    below every other system's range)."""
    try:
        return int(EPHEMERAL_RANGE.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def free_ports(count: int) -> list[int]:
    """`count` distinct loopback ports nothing listens on right now, between Ray's worker ports and the ephemeral
    range (held open together, so never the same); the kernel's pick where that gap is too small."""
    gap = range(RAY_WORKER_PORTS_END + 1, ephemeral_start())
    candidates = random.sample(gap, DRAWS) if len(gap) > DRAWS else []
    sockets: list[socket.socket] = []
    try:
        for port in [*candidates, *[0] * count]:  # port 0: the kernel picks, once the gap's draws run out
            if len(sockets) < count and (held := _bound(port)) is not None:
                sockets.append(held)
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def _bound(port: int) -> socket.socket | None:
    s = socket.socket()
    try:
        s.bind(("127.0.0.1", port))
    except OSError:
        s.close()
        return None
    return s


def free_port() -> int:
    return free_ports(1)[0]
