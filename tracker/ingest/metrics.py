"""Prometheus metrics of the ingestion service, safe across several server processes.

`tracker serve` points PROMETHEUS_MULTIPROC_DIR at a fresh directory before it
starts its server processes, so each process writes its samples there and
`/metrics` in any process returns the sum over all of them.
"""

from __future__ import annotations

import os

from prometheus_client import (
    CONTENT_TYPE_LATEST,
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
    """The service's counters, histograms and gauges, with label children resolved once."""

    def __init__(self) -> None:
        self.requests = Counter(
            "tracker_ingest_requests_total",
            "HTTP requests by endpoint and status code.",
            ["endpoint", "status"],
        )
        self.latency = Histogram(
            "tracker_ingest_request_duration_seconds",
            "Time from handler start to response, by endpoint.",
            ["endpoint"],
            buckets=_LATENCY_BUCKETS,
        )
        self.accepted = Counter(
            "tracker_ingest_events_accepted_total",
            "Events made durable, by endpoint.",
            ["endpoint"],
        )
        self.rejected = Counter(
            "tracker_ingest_events_rejected_total", "Events rejected, by reason.", ["reason"]
        )
        self.queue_depth = Gauge(
            "tracker_ingest_producer_queue_events",
            "Events waiting in the producer queues of all server processes.",
            multiprocess_mode="livesum",
        )
        self.spool_size = Gauge(
            "tracker_ingest_spool_events",
            "Events held in the spool while the remote broker is unreachable.",
            multiprocess_mode="livemax",
        )
        self.broker_up = Gauge(
            "tracker_ingest_broker_up",
            "1 when every server process publishes to the broker, 0 when any spools or is disconnected.",
            multiprocess_mode="livemin",
        )
        self._request_children: dict[tuple[str, int], Counter] = {}
        self._latency_children: dict[str, Histogram] = {}
        self._accepted_children: dict[str, Counter] = {}
        self._rejected_children = {
            reason: self.rejected.labels(reason) for reason in REJECTION_REASONS
        }

    def observe(self, endpoint: str, status: int, seconds: float) -> None:
        """Count one request and record its latency."""
        key = (endpoint, status)
        child = self._request_children.get(key)
        if child is None:
            child = self._request_children[key] = self.requests.labels(endpoint, str(status))
        child.inc()
        histogram = self._latency_children.get(endpoint)
        if histogram is None:
            histogram = self._latency_children[endpoint] = self.latency.labels(endpoint)
        histogram.observe(seconds)

    def count_accepted(self, endpoint: str, events: int = 1) -> None:
        child = self._accepted_children.get(endpoint)
        if child is None:
            child = self._accepted_children[endpoint] = self.accepted.labels(endpoint)
        child.inc(events)

    def count_rejected(self, reason: str, events: int = 1) -> None:
        self._rejected_children[reason].inc(events)

    def set_producer_state(self, queue_events: int, spool_events: int, broker_up: bool) -> None:
        self.queue_depth.set(queue_events)
        self.spool_size.set(spool_events)
        self.broker_up.set(1 if broker_up else 0)


def render_metrics() -> bytes:
    """Return the Prometheus text exposition of every process (or of this one alone)."""
    if os.environ.get(MULTIPROC_ENV):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return generate_latest(registry)
    from prometheus_client import REGISTRY

    return generate_latest(REGISTRY)
