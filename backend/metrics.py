"""Prometheus metrics for /metrics: one registry per app (so several apps in one process, as in tests, do not
mix their counts). Labels use route templates, never raw paths, so their number stays bounded."""
from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
ANALYSIS_BUCKETS = (0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10, 30, 60)


class Metrics:
    content_type = CONTENT_TYPE_LATEST

    def __init__(self, *, queue_depth, workers_alive):
        self.registry = CollectorRegistry()
        self.requests = Counter("essentia_http_requests", "HTTP requests answered", ["endpoint", "method", "status"],
                                registry=self.registry)
        self.latency = Histogram("essentia_http_request_duration_seconds", "Time to answer a request",
                                 ["endpoint"], buckets=LATENCY_BUCKETS, registry=self.registry)
        self.analysis = Histogram("essentia_analysis_duration_seconds", "Decode + analysis time of a cache miss",
                                  buckets=ANALYSIS_BUCKETS, registry=self.registry)
        self.cache = Counter("essentia_cache_lookups", "Analysis requests by cache outcome", ["outcome"],
                             registry=self.registry)
        self.rate_limited = Counter("essentia_rate_limit_rejections", "Requests refused by the rate limiter",
                                    registry=self.registry)
        Gauge("essentia_analysis_queue_depth", "Analyses running or waiting in the pool",
              registry=self.registry).set_function(queue_depth)
        Gauge("essentia_analysis_workers_alive", "Live analysis pool processes",
              registry=self.registry).set_function(workers_alive)

    def observe_request(self, endpoint: str, method: str, status: int, seconds: float) -> None:
        self.requests.labels(endpoint, method, str(status)).inc()
        self.latency.labels(endpoint).observe(seconds)

    def render(self) -> bytes:
        return generate_latest(self.registry)
