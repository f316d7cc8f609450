"""Prometheus metrics of one consumer process, all labelled by consumer name."""

from __future__ import annotations

import contextlib

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

__all__ = ["ConsumerMetrics"]

BATCH_SECONDS_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class ConsumerMetrics:
    """The runtime's counters, lag gauge and batch histogram in a private registry.

    Sinks register their own metrics on `registry` so one endpoint serves them all.
    """

    def __init__(self, consumer: str) -> None:
        self.consumer = consumer
        self.registry = CollectorRegistry(auto_describe=True)
        self._processed = Counter(
            "tracker_consumer_events_processed",
            "Events a sink made durable.",
            ["consumer"],
            registry=self.registry,
        )
        self._failed = Counter(
            "tracker_consumer_events_failed",
            "Events in batches whose processing raised; they are retried, not lost.",
            ["consumer"],
            registry=self.registry,
        )
        self._dead_lettered = Counter(
            "tracker_consumer_events_dead_lettered",
            "Events, or undecodable messages, published to the dead-letters topic.",
            ["consumer"],
            registry=self.registry,
        )
        self._lag = Gauge(
            "tracker_consumer_lag_messages",
            "Messages between the committed offset and the end of the partition.",
            ["consumer", "partition"],
            registry=self.registry,
        )
        self._batch_seconds = Histogram(
            "tracker_consumer_batch_seconds",
            "Wall time of one sink process() call that succeeded.",
            ["consumer"],
            buckets=BATCH_SECONDS_BUCKETS,
            registry=self.registry,
        )

    def processed(self, count: int) -> None:
        self._processed.labels(self.consumer).inc(count)

    def failed(self, count: int) -> None:
        self._failed.labels(self.consumer).inc(count)

    def dead_lettered(self, count: int) -> None:
        self._dead_lettered.labels(self.consumer).inc(count)

    def lag(self, partition: int, messages: int) -> None:
        self._lag.labels(self.consumer, str(partition)).set(messages)

    def forget_partition(self, partition: int) -> None:
        """Drop the lag series of a partition this member no longer owns."""
        with contextlib.suppress(KeyError):
            self._lag.remove(self.consumer, str(partition))

    def batch_seconds(self, seconds: float) -> None:
        self._batch_seconds.labels(self.consumer).observe(seconds)

    def serve(self, host: str, port: int) -> object:
        """Start the /metrics HTTP server on a daemon thread; return the server."""
        server, _thread = start_http_server(port, addr=host, registry=self.registry)
        return server
