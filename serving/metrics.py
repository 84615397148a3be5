"""Prometheus metrics of one replica, served on GET /metrics. No Ray here.

Each replica keeps its own registry, so with several replicas a scrape of /metrics sees the replica that
answered it (its id is the `replica` label). Requests the Serve proxy refuses before any replica sees
them (503 overload, 408 timeout) are counted in Ray Serve's own metrics (ray_serve_num_http_error_requests).
"""

from __future__ import annotations

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest

LATENCY_BUCKETS_S = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
BATCH_BUCKETS = (1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64, 128, 256)
ROW_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 1024, 4096, 16384, 65536)


class Metrics:
    content_type = CONTENT_TYPE_LATEST

    def __init__(self, *, model: str, replica: str = ""):
        self.registry = CollectorRegistry(auto_describe=True)
        self.model, self.replica = model, replica
        labels = {"registry": self.registry}
        self.requests = Counter(
            "kiln_requests",
            "HTTP requests answered by this replica",
            ["route", "method", "status", "model_version", "replica"],
            **labels,
        )
        self.errors = Counter(
            "kiln_request_errors", "HTTP responses with status >= 400", ["route", "status", "replica"], **labels
        )
        self.latency = Histogram(
            "kiln_request_latency_seconds",
            "Time from request to the end of the response",
            ["route", "replica"],
            buckets=LATENCY_BUCKETS_S,
            **labels,
        )
        self.batch_size = Histogram(
            "kiln_batch_size",
            "Requests merged into one forward pass (dynamic batching)",
            ["replica"],
            buckets=BATCH_BUCKETS,
            **labels,
        )
        self.batch_rows = Histogram(
            "kiln_batch_rows", "Rows in one forward pass", ["replica"], buckets=ROW_BUCKETS, **labels
        )
        self.version = Gauge(
            "kiln_model_version", "Model version answering new requests", ["model", "replica"], **labels
        )
        self.reloads = Counter(
            "kiln_model_reloads", "Version switches after the alias moved, by outcome", ["outcome", "replica"], **labels
        )

    def observe_request(self, *, route: str, method: str, status: int, version: str, seconds: float) -> None:
        self.requests.labels(route, method, str(status), version, self.replica).inc()
        if status >= 400:
            self.errors.labels(route, str(status), self.replica).inc()
        self.latency.labels(route, self.replica).observe(seconds)

    def observe_batch(self, *, requests: int, rows: int) -> None:
        self.batch_size.labels(self.replica).observe(requests)
        self.batch_rows.labels(self.replica).observe(rows)

    def set_version(self, version: int) -> None:
        self.version.labels(self.model, self.replica).set(version)

    def reloaded(self, outcome: str) -> None:
        self.reloads.labels(outcome, self.replica).inc()

    def render(self) -> bytes:
        return generate_latest(self.registry)
