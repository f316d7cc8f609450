"""Ingest metrics: counts recorded by handlers reach prometheus_client on flush, exactly once."""

from __future__ import annotations

from prometheus_client import CollectorRegistry

from tracker.ingest.metrics import IngestMetrics


def sample(registry: CollectorRegistry, name: str, **labels: str) -> float | None:
    return registry.get_sample_value(name, labels)


def test_counts_appear_only_after_flush():
    registry = CollectorRegistry()
    metrics = IngestMetrics(registry)

    metrics.observe("/p", 200, 0.003)
    metrics.count_accepted("/p")

    assert sample(registry, "tracker_ingest_requests_total", endpoint="/p", status="200") is None
    metrics.flush()
    assert sample(registry, "tracker_ingest_requests_total", endpoint="/p", status="200") == 1
    assert sample(registry, "tracker_ingest_events_accepted_total", endpoint="/p") == 1


def test_flush_adds_only_new_counts():
    registry = CollectorRegistry()
    metrics = IngestMetrics(registry)

    metrics.count_rejected("tenant")
    metrics.count_accepted("/batch", 1000)
    metrics.flush()
    metrics.flush()
    metrics.count_rejected("tenant", 2)
    metrics.count_accepted("/batch", 500)
    metrics.flush()

    assert sample(registry, "tracker_ingest_events_rejected_total", reason="tenant") == 3
    assert sample(registry, "tracker_ingest_events_accepted_total", endpoint="/batch") == 1500
    assert sample(registry, "tracker_ingest_events_rejected_total", reason="limits") == 0


def test_latency_lands_in_prometheus_buckets():
    registry = CollectorRegistry()
    metrics = IngestMetrics(registry)

    # 0.001 sits on a bucket bound, which Prometheus counts as inside (le means <=).
    for seconds in (0.0001, 0.001, 0.002, 0.3, 7.0):
        metrics.observe("/t", 307, seconds)
    metrics.flush()
    metrics.observe("/t", 307, 0.0004)
    metrics.flush()

    name = "tracker_ingest_request_duration_seconds"
    assert sample(registry, f"{name}_bucket", endpoint="/t", le="0.0005") == 2
    assert sample(registry, f"{name}_bucket", endpoint="/t", le="0.001") == 3
    assert sample(registry, f"{name}_bucket", endpoint="/t", le="0.0025") == 4
    assert sample(registry, f"{name}_bucket", endpoint="/t", le="0.5") == 5
    assert sample(registry, f"{name}_bucket", endpoint="/t", le="2.5") == 5
    assert sample(registry, f"{name}_count", endpoint="/t") == 6
    assert abs(sample(registry, f"{name}_sum", endpoint="/t") - 7.3035) < 1e-9
