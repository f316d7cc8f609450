"""Prometheus metrics of the ingestion service, safe across several server processes.

`tracker serve` points PROMETHEUS_MULTIPROC_DIR at a fresh directory before it
starts its server processes, so each process writes its samples there and
`/metrics` in any process returns the sum over all of them.
"""

from __future__ import annotations

import os
import threading
from bisect import bisect_left

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)

__all__ = [
    "CONTENT_TYPE_LATEST",
    "REJECTION_REASONS",
    "IngestMetrics",
    "render_metrics",
]

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"

# Fixed set of reasons for rejected events; a free-text label would explode the series.
REJECTION_REASONS = (
    "auth",
    "batch_event",
    "broker",
    "decryption",
    "destination",
    "event",
    "expired",
    "limits",
    "link",
    "media_type",
    "request",
    "signature",
    "tenant",
)

_LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


class IngestMetrics:
    """The service's counters, histograms and gauges.

    Handlers only bump plain numbers in dicts and lists, which costs far less than a
    prometheus_client call per request (a lock and an mmap write each in
    multiprocess mode). `flush` adds what changed since the last flush to the
    prometheus_client metrics. The server calls it every second, on every
    scrape of `/metrics` and when it drains, so a scrape served by another
    process includes this process's counts at most about a second late.

    The counts only grow, and only handlers on the event loop thread bump them,
    so `flush` can read them from any thread. It copies each dict or list in one
    C-level call under the GIL and sends the difference from its previous copy.
    """

    def __init__(self, registry: CollectorRegistry = REGISTRY) -> None:
        self.requests = Counter(
            "tracker_ingest_requests_total",
            "HTTP requests by endpoint and status code.",
            ["endpoint", "status"],
            registry=registry,
        )
        self.latency = Histogram(
            "tracker_ingest_request_duration_seconds",
            "Time from handler start to response, by endpoint.",
            ["endpoint"],
            buckets=_LATENCY_BUCKETS,
            registry=registry,
        )
        self.accepted = Counter(
            "tracker_ingest_events_accepted_total",
            "Events made durable, by endpoint.",
            ["endpoint"],
            registry=registry,
        )
        self.rejected = Counter(
            "tracker_ingest_events_rejected_total",
            "Events rejected, by reason.",
            ["reason"],
            registry=registry,
        )
        self.queue_depth = Gauge(
            "tracker_ingest_producer_queue_events",
            "Events waiting in the producer queues of all server processes.",
            multiprocess_mode="livesum",
            registry=registry,
        )
        self.spool_size = Gauge(
            "tracker_ingest_spool_events",
            "Events held in the spool while the remote broker is unreachable.",
            multiprocess_mode="livemax",
            registry=registry,
        )
        self.broker_up = Gauge(
            "tracker_ingest_broker_up",
            "1 when every server process publishes to the broker, 0 when any spools or is disconnected.",
            multiprocess_mode="livemin",
            registry=registry,
        )
        for reason in REJECTION_REASONS:
            self.rejected.labels(reason)

        # Counts since start, bumped by handlers.
        self._request_counts: dict[tuple[str, int], int] = {}
        self._accepted_counts: dict[str, int] = {}
        self._rejected_counts: dict[str, int] = dict.fromkeys(REJECTION_REASONS, 0)
        # Per endpoint: one count per bucket of _LATENCY_BUCKETS plus +Inf, then the sum of seconds.
        self._latency_counts: dict[str, list[float]] = {}

        # What `flush` has sent to prometheus_client so far, guarded by `_flush_lock`.
        self._flush_lock = threading.Lock()
        self._flushed_requests: dict[tuple[str, int], int] = {}
        self._flushed_accepted: dict[str, int] = {}
        self._flushed_rejected: dict[str, int] = dict.fromkeys(REJECTION_REASONS, 0)
        self._flushed_latency: dict[str, list[float]] = {}

    def observe(self, endpoint: str, status: int, seconds: float) -> None:
        """Count one request and record its latency."""
        key = (endpoint, status)
        counts = self._request_counts
        counts[key] = counts.get(key, 0) + 1
        buckets = self._latency_counts.get(endpoint)
        if buckets is None:
            buckets = self._latency_counts[endpoint] = [0.0] * (len(_LATENCY_BUCKETS) + 2)
        buckets[bisect_left(_LATENCY_BUCKETS, seconds)] += 1
        buckets[-1] += seconds

    def count_accepted(self, endpoint: str, events: int = 1) -> None:
        counts = self._accepted_counts
        counts[endpoint] = counts.get(endpoint, 0) + events

    def count_rejected(self, reason: str, events: int = 1) -> None:
        # Indexing (not .get) keeps the fixed reason set: an unknown reason raises KeyError.
        self._rejected_counts[reason] += events

    def set_producer_state(self, queue_events: int, spool_events: int, broker_up: bool) -> None:
        self.queue_depth.set(queue_events)
        self.spool_size.set(spool_events)
        self.broker_up.set(1 if broker_up else 0)

    def flush(self) -> None:
        """Add the counts recorded since the previous flush to the prometheus_client metrics."""
        with self._flush_lock:
            for key, total in self._request_counts.copy().items():
                delta = total - self._flushed_requests.get(key, 0)
                if delta:
                    self.requests.labels(key[0], str(key[1])).inc(delta)
                    self._flushed_requests[key] = total
            for endpoint, total in self._accepted_counts.copy().items():
                delta = total - self._flushed_accepted.get(endpoint, 0)
                if delta:
                    self.accepted.labels(endpoint).inc(delta)
                    self._flushed_accepted[endpoint] = total
            for reason, total in self._rejected_counts.copy().items():
                delta = total - self._flushed_rejected[reason]
                if delta:
                    self.rejected.labels(reason).inc(delta)
                    self._flushed_rejected[reason] = total
            for endpoint, buckets in self._latency_counts.copy().items():
                self._flush_latency(endpoint, buckets.copy())

    def _flush_latency(self, endpoint: str, buckets: list[float]) -> None:
        previous = self._flushed_latency.get(endpoint) or [0.0] * len(buckets)
        if buckets == previous:
            return
        child = self.latency.labels(endpoint)
        # prometheus_client (0.26) offers no call that adds many observations at once, so this
        # adds to the child's per-bucket values the way Histogram.observe does for one.
        for index, value in enumerate(child._buckets):
            delta = buckets[index] - previous[index]
            if delta:
                value.inc(delta)
        child._sum.inc(buckets[-1] - previous[-1])
        self._flushed_latency[endpoint] = buckets


def render_metrics() -> bytes:
    """Return the Prometheus text exposition of every process (or of this one alone)."""
    if os.environ.get(MULTIPROC_ENV):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return generate_latest(registry)
    return generate_latest(REGISTRY)
