"""One pure ASGI middleware around the routes: body size cap, per-request timeout, version header, metrics.

Pure ASGI rather than Starlette's BaseHTTPMiddleware, so bodies stream through without being buffered.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable

from starlette.exceptions import HTTPException
from starlette.routing import Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from serving.metrics import Metrics

VERSION_HEADER = "x-model-version"
# A body over the limit is read and dropped up to this many bytes before the 413 goes out: clients that send
# the whole body before reading the answer (urllib, requests) would otherwise see the connection reset instead
# of the message. Larger bodies are refused at once and the connection closed.
DRAIN_BYTES = 64 << 20
METHODS = frozenset({"GET", "POST", "PUT", "DELETE", "HEAD", "OPTIONS", "PATCH"})  # the metrics' method label


LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})
# Bodies a POST may carry: JSON, or the v2 binary tensor extension. A browser sends text/plain, a form or a
# multipart body from any page without asking first; each is refused (415) before it is read. No Content-Type
# at all is taken: tritonclient sends none (the Host check, not this, is what stops a DNS-rebinding page).
BODY_TYPES = ("", "application/json", "application/octet-stream", "application/vnd.kserve.binary")


def answered_hosts(bind_host: str, allowed: list[str]) -> frozenset[str] | None:
    """The Host names an endpoint bound to `bind_host` answers (None: any)."""
    if allowed:
        return LOOPBACK_HOSTS | {h.lower() for h in allowed}
    return LOOPBACK_HOSTS if bind_host in LOOPBACK_HOSTS else None


def host_name(header: str) -> str:
    """A Host header's name without its port: "127.0.0.1:8000" -> "127.0.0.1", "[::1]:8000" -> "::1"."""
    if header.startswith("["):
        return header[1:].partition("]")[0].lower()
    return header.rpartition(":")[0].lower() if header.count(":") == 1 else header.lower()


def refusal(scope: Scope, hosts: frozenset[str] | None) -> tuple[int, str] | None:
    """Why a request is refused before it reaches a route: a Host this endpoint does not answer, or a POST body
    that is neither JSON nor v2's binary extension."""
    headers = {k.lower(): v for k, v in scope.get("headers", [])}
    host = headers.get(b"host", b"").decode("latin-1")
    if hosts is not None and host_name(host) not in hosts:
        return 421, f"Host {host!r} is not one this endpoint answers (serve.allowed_hosts)"
    if scope["method"] == "POST":
        kind = headers.get(b"content-type", b"").decode("latin-1").split(";")[0].strip().lower()
        if kind not in BODY_TYPES:
            return 415, (
                f"Content-Type {kind}: send application/json (or v2's binary extension, application/octet-stream)"
            )
    return None


class BodyTooLarge(HTTPException):
    def __init__(self, limit: int, size: int | None = None):
        got = f"{size} bytes" if size is not None else "more"
        super().__init__(413, f"request body is {got}; the limit is {limit} bytes (serve.max_body_bytes)")


def error_body(path: str, status: int, message: str) -> bytes:
    """/v2 errors are {"error": ...} (the protocol's shape); the rest follow FastAPI's {"detail": ...}."""
    return json.dumps({"error" if path.startswith("/v2") else "detail": message}).encode()


class Guard:
    def __init__(
        self,
        app: ASGIApp,
        *,
        max_body_bytes: int,
        timeout_s: float,
        metrics: Metrics,
        version: Callable[[], int],
        routes: list,
        hosts: frozenset[str] | None = LOOPBACK_HOSTS,
    ):
        self.app, self.max_body_bytes, self.timeout_s = app, max_body_bytes, timeout_s
        self.metrics, self.version, self.routes, self.hosts = metrics, version, routes, hosts

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        started = time.perf_counter()
        state = {"status": 500, "started": False, "version": str(self.version()), "received": 0}

        async def send_with_version(message: Message) -> None:
            if message["type"] == "http.response.start":
                state["status"], state["started"] = message["status"], True
                headers = list(message.get("headers", []))
                found = [v for k, v in headers if k.lower() == VERSION_HEADER.encode()]
                if found:
                    state["version"] = found[0].decode()
                else:
                    headers.append((VERSION_HEADER.encode(), state["version"].encode()))
                message = {**message, "headers": headers}
            await send(message)

        async def capped_receive() -> Message:
            message = await receive()
            if message["type"] == "http.request":
                state["received"] += len(message.get("body", b""))
                if state["received"] > self.max_body_bytes:
                    raise BodyTooLarge(self.max_body_bytes)
            return message

        try:
            refused = refusal(scope, self.hosts)
            if refused is not None:  # before any of the body is read
                return await self._refuse(scope, send_with_version, state, *refused)
            declared = _content_length(scope)
            if declared is not None and declared > self.max_body_bytes:
                raise BodyTooLarge(self.max_body_bytes, declared)  # refused without handing any of it on
            async with asyncio.timeout(self.timeout_s):
                await self.app(scope, capped_receive, send_with_version)
        except BodyTooLarge as err:
            if (declared or state["received"]) <= DRAIN_BYTES:
                await _drain(receive, state, self.timeout_s)
            await self._refuse(scope, send_with_version, state, 413, err.detail)
        except TimeoutError:
            await self._refuse(
                scope,
                send_with_version,
                state,
                504,
                f"request took longer than {self.timeout_s:g} s (serve.request_timeout_s)",
            )
        finally:
            method = scope["method"] if scope["method"] in METHODS else "other"
            self.metrics.observe_request(
                route=self._route(scope),
                method=method,
                status=state["status"],
                version=state["version"],
                seconds=time.perf_counter() - started,
            )

    async def _refuse(self, scope: Scope, send: Send, state: dict, status: int, message: str) -> None:
        if state["started"]:  # too late for a status line: the client sees a cut response
            state["status"] = status
            return
        body = error_body(scope["path"], status, message)
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                    (b"connection", b"close"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})

    def _route(self, scope: Scope) -> str:
        """The route template (/v2/models/{name}/infer), so paths do not explode the label set."""
        route = scope.get("route")
        if route is None:  # refused before routing
            for candidate in self.routes:
                if candidate.matches(scope)[0] == Match.FULL:
                    route = candidate
                    break
        return getattr(route, "path", "unmatched")


async def _drain(receive: Receive, state: dict, timeout_s: float) -> None:
    """Read and drop the rest of a refused body, up to DRAIN_BYTES and the request timeout."""
    try:
        async with asyncio.timeout(timeout_s):
            while state["received"] <= DRAIN_BYTES:
                message = await receive()
                if message["type"] != "http.request":
                    return
                state["received"] += len(message.get("body", b""))
                if not message.get("more_body", False):
                    return
    except TimeoutError:
        pass


def _content_length(scope: Scope) -> int | None:
    for key, value in scope.get("headers", []):
        if key == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None
