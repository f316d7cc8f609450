"""Webhook consumer: turns matching events into queued, signed deliveries.

`process` stores one `webhook_deliveries` row per (matching endpoint, event) in
one registry transaction before it returns, so an event is never lost between
the broker and the queue, and UNIQUE(endpoint_id, event_id) makes redelivered
events no-ops. A `DeliveryEngine` task sends the rows (see `webhook_delivery`).
The consumer reads `events-clean` unless `WEBHOOK_SOURCE_TOPIC` names `events`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass, field

from tracker.broker.base import TOPIC_EVENTS, TOPIC_EVENTS_CLEAN
from tracker.consumers import webhook_queue as queue
from tracker.consumers.runtime import Batch, Sink, SinkContext
from tracker.consumers.ssrf import NetworkPolicy
from tracker.consumers.webhook_delivery import DeliveryEngine, DeliveryPolicy
from tracker.errors import RetryableSinkError
from tracker.registry.webhooks import WebhookEndpoint, delivery_id_for
from tracker.settings import Env

__all__ = ["WebhookSettings", "WebhookSink", "create_sink"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class WebhookSettings:
    """Source topic, delivery policy and network policy of the webhook consumer."""

    source_topic: str = TOPIC_EVENTS_CLEAN
    delivery: DeliveryPolicy = field(default_factory=DeliveryPolicy)
    network: NetworkPolicy = field(default_factory=NetworkPolicy)
    endpoints_refresh_seconds: float = 5.0

    @classmethod
    def from_env(cls, env: Env) -> WebhookSettings:
        delivery = DeliveryPolicy(
            max_attempts=env.int("WEBHOOK_MAX_ATTEMPTS", 8, minimum=1, maximum=100),
            timeout_seconds=env.float("WEBHOOK_TIMEOUT_SECONDS", 10.0, minimum=0.1),
            backoff_base_seconds=env.float("WEBHOOK_BACKOFF_BASE_SECONDS", 1.0, minimum=0.0),
            backoff_max_seconds=env.float("WEBHOOK_BACKOFF_MAX_SECONDS", 3600.0, minimum=0.0),
            retry_after_max_seconds=env.float(
                "WEBHOOK_RETRY_AFTER_MAX_SECONDS", 3600.0, minimum=0.0
            ),
            endpoint_concurrency=env.int("WEBHOOK_ENDPOINT_CONCURRENCY", 4, minimum=1, maximum=256),
            max_response_bytes=env.int(
                "WEBHOOK_MAX_RESPONSE_BYTES", 4096, minimum=0, maximum=1 << 20
            ),
            poll_seconds=env.float("WEBHOOK_POLL_SECONDS", 0.5, minimum=0.01),
        )
        return cls(
            source_topic=env.choice(
                "WEBHOOK_SOURCE_TOPIC", TOPIC_EVENTS_CLEAN, (TOPIC_EVENTS_CLEAN, TOPIC_EVENTS)
            ),
            delivery=delivery,
            network=NetworkPolicy.from_env(env),
            endpoints_refresh_seconds=env.float(
                "WEBHOOK_ENDPOINTS_REFRESH_SECONDS", 5.0, minimum=0.0
            ),
        )


class WebhookSink(Sink):
    """Queues deliveries for matching endpoints and runs the delivery engine beside the runtime."""

    name = "webhooks"

    def __init__(self, settings: WebhookSettings) -> None:
        self.settings = settings
        self.source_topic = settings.source_topic
        self.engine: DeliveryEngine | None = None
        self._endpoints: dict[str, list[WebhookEndpoint]] = {}
        self._endpoints_loaded = float("-inf")
        self._registry = None
        self._engine_task: asyncio.Task[None] | None = None

    async def open(self, context: SinkContext) -> None:
        self._registry = context.registry
        self.engine = DeliveryEngine(
            self._registry, policy=self.settings.delivery, network=self.settings.network
        )
        self._engine_task = asyncio.create_task(self.engine.run(), name="webhook-delivery")

    async def _endpoints_by_tenant(self) -> dict[str, list[WebhookEndpoint]]:
        if time.monotonic() - self._endpoints_loaded >= self.settings.endpoints_refresh_seconds:
            targets = await asyncio.to_thread(queue.load_targets, self._registry)
            endpoints: dict[str, list[WebhookEndpoint]] = {}
            for endpoint, _secret in targets:
                endpoints.setdefault(endpoint.key_prefix, []).append(endpoint)
            self._endpoints = endpoints
            self._endpoints_loaded = time.monotonic()
        return self._endpoints

    async def process(self, batch: Batch) -> None:
        endpoints = await self._endpoints_by_tenant()
        deliveries: list[queue.NewDelivery] = []
        for event, raw in zip(batch.events, batch.raw, strict=True):
            params = event.get("params")
            event_id = event.get("event_id")
            if not isinstance(params, dict) or not isinstance(event_id, str):
                continue
            for endpoint in endpoints.get(params.get("key_prefix"), ()):  # type: ignore[call-overload]
                if endpoint.matches(event):
                    deliveries.append(
                        queue.NewDelivery(
                            delivery_id=delivery_id_for(endpoint.endpoint_id, event_id),
                            endpoint_id=endpoint.endpoint_id,
                            key_prefix=endpoint.key_prefix,
                            event_id=event_id,
                            event=raw,
                        )
                    )
        if not deliveries:
            return
        try:
            inserted = await asyncio.to_thread(
                queue.enqueue, self._registry, deliveries, time.time()
            )
        except Exception as error:
            # sqlite3.OperationalError (database locked) and libSQL network errors are transient.
            raise RetryableSinkError(
                f"storing {len(deliveries)} webhook deliveries failed: {error}"
            ) from error
        logger.debug(
            "Queued webhook deliveries.", extra={"partition": batch.partition, "count": inserted}
        )
        if self.engine is not None:
            self.engine.wake()

    async def close(self) -> None:
        if self._engine_task is not None:
            self._engine_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._engine_task
            self._engine_task = None


def create_sink(env: Env) -> WebhookSink:
    """Build the `webhooks` sink from the environment."""
    return WebhookSink(WebhookSettings.from_env(env))
