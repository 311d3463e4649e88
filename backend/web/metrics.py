"""Prometheus metrics for /metrics: one registry per app (so several apps in one process, as in tests, do not
mix their counts). Labels use route templates, never raw paths, so their number stays bounded.

Under gunicorn (which sets PROMETHEUS_MULTIPROC_DIR) prometheus_client keeps each HTTP process's counts in files
there, and a scrape, whichever process answers it, sums them all; the pool's gauges come from the pool itself.
"""
from __future__ import annotations

import os
from typing import Callable

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest, multiprocess
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from prometheus_client.exposition import CONTENT_TYPE_LATEST

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
ANALYSIS_BUCKETS = (0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10, 30, 60)


class Metrics:
    content_type = CONTENT_TYPE_LATEST

    def __init__(self, *, queue_depth: Callable[[], float], workers_alive: Callable[[], float]):
        self.multiprocess = "PROMETHEUS_MULTIPROC_DIR" in os.environ
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
        self._pool = _PoolGauges(queue_depth, workers_alive)
        self.registry.register(self._pool)

    def observe_request(self, endpoint: str, method: str, status: int, seconds: float) -> None:
        self.requests.labels(endpoint, method, str(status)).inc()
        self.latency.labels(endpoint).observe(seconds)

    def render(self) -> bytes:
        if not self.multiprocess:
            return generate_latest(self.registry)
        merged = CollectorRegistry()
        multiprocess.MultiProcessCollector(merged)
        merged.register(self._pool)  # one pool serves every process: ask it, do not add up
        return generate_latest(merged)


class _PoolGauges(Collector):
    """The analysis pool's state, read when scraped."""

    NAMES = (("essentia_analysis_queue_depth", "Analyses running or waiting in the pool"),
             ("essentia_analysis_workers_alive", "Live analysis pool processes"))

    def __init__(self, queue_depth: Callable[[], float], workers_alive: Callable[[], float]):
        self._reads = (queue_depth, workers_alive)

    def describe(self):
        # What the registry checks names with: it must not ask the pool (it may not be running yet).
        return [GaugeMetricFamily(name, help_text) for name, help_text in self.NAMES]

    def collect(self):
        return [GaugeMetricFamily(name, help_text, value=read())
                for (name, help_text), read in zip(self.NAMES, self._reads)]
