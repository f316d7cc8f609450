"""Webhook delivery engine: signed POSTs, per-endpoint concurrency, retries and dead letters.

Each endpoint has its own concurrency limit and its own claim of due rows, so a
slow or dead receiver only delays its own deliveries. An attempt resolves the
host, checks every address against the SSRF policy and connects to the checked
address (the Host header and TLS SNI keep the name), so a later DNS answer
cannot redirect it.

A 2xx response delivers. A timeout, connection error, 429 or 5xx is retried
with full-jitter exponential backoff, or after `Retry-After` (capped), up to
`max_attempts`. Any other status makes the delivery dead, and so do a rejected
destination and an exhausted attempt count. Redirects are not followed, so a
3xx is such a status.
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import hashlib
import hmac
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx

from tracker.consumers import webhook_queue as queue
from tracker.consumers.ssrf import (
    DestinationRejected,
    NetworkPolicy,
    Resolver,
    check_url,
    resolve_destination,
    system_resolver,
)
from tracker.registry.webhooks import WebhookEndpoint

__all__ = ["DeliveryEngine", "DeliveryPolicy", "Outcome", "parse_retry_after", "sign"]

logger = logging.getLogger(__name__)

SIGNATURE_VERSION = "v1"


def sign(secret: str, timestamp: int, body: bytes) -> str:
    """Return the `Tracker-Signature` value: `v1=` and hex HMAC-SHA256 of `"{timestamp}." + body`."""
    message = str(timestamp).encode("ascii") + b"." + body
    digest = hmac.new(secret.encode("utf-8"), message, hashlib.sha256).hexdigest()
    return f"{SIGNATURE_VERSION}={digest}"


def parse_retry_after(value: str | None, now: float) -> float | None:
    """Return the delay in seconds that a `Retry-After` value requests (delta-seconds or HTTP date)."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(int(value))
    try:
        moment = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if moment is None or moment.tzinfo is None:
        return None
    return max(0.0, moment.timestamp() - now)


@dataclass(frozen=True, slots=True)
class DeliveryPolicy:
    """Timeouts, retry schedule and limits of webhook delivery."""

    max_attempts: int = 8
    timeout_seconds: float = 10.0
    backoff_base_seconds: float = 1.0
    backoff_max_seconds: float = 3600.0
    retry_after_max_seconds: float = 3600.0
    endpoint_concurrency: int = 4
    max_response_bytes: int = 4096
    poll_seconds: float = 0.5
    user_agent: str = "tracker-webhooks/1"

    def backoff(self, attempts: int, rng: random.Random) -> float:
        """Return a full-jitter delay after `attempts` failed attempts: uniform in [0, min(max, base * 2^(n-1))]."""
        ceiling = min(
            self.backoff_max_seconds, self.backoff_base_seconds * 2 ** max(0, attempts - 1)
        )
        return rng.uniform(0, ceiling)


@dataclass(frozen=True, slots=True)
class Outcome:
    """The result of one attempt: a status code or an error, and whether to retry."""

    delivered: bool
    retryable: bool
    code: int | None = None
    error: str | None = None
    retry_after: float | None = None


class DeliveryEngine:
    """Claims due deliveries from the registry and sends them, endpoint by endpoint."""

    def __init__(
        self,
        registry: Any,
        *,
        policy: DeliveryPolicy,
        network: NetworkPolicy,
        client: httpx.AsyncClient | None = None,
        resolver: Resolver = system_resolver,
        clock: Callable[[], float] = time.time,
        rng: random.Random | None = None,
    ) -> None:
        self.registry = registry
        self.policy = policy
        self.network = network
        self.client = client or httpx.AsyncClient(follow_redirects=False, trust_env=False)
        self._owns_client = client is None
        self.resolver = resolver
        self.clock = clock
        self.rng = rng or random.Random()
        self._targets: dict[str, tuple[WebhookEndpoint, str]] = {}
        self._in_flight: dict[str, set[asyncio.Task[None]]] = {}
        self._wake = asyncio.Event()

    def wake(self) -> None:
        """Claim due deliveries now instead of at the next poll."""
        self._wake.set()

    async def refresh_targets(self) -> None:
        targets = await asyncio.to_thread(queue.load_targets, self.registry)
        self._targets = {endpoint.endpoint_id: (endpoint, secret) for endpoint, secret in targets}

    async def dispatch_due(self) -> int:
        """Start attempts for due deliveries within each endpoint's free concurrency; return how many."""
        await self.refresh_targets()
        started = 0
        now = self.clock()
        for endpoint_id, (endpoint, secret) in self._targets.items():
            running = self._in_flight.setdefault(endpoint_id, set())
            free = self.policy.endpoint_concurrency - len(running)
            claimed = await asyncio.to_thread(
                queue.claim_due, self.registry, endpoint_id, now, free
            )
            for delivery in claimed:
                task = asyncio.create_task(self._deliver(endpoint, secret, delivery))
                running.add(task)
                task.add_done_callback(running.discard)
                started += 1
        return started

    async def drain(self) -> None:
        """Wait for every attempt in flight to finish."""
        tasks = [task for running in self._in_flight.values() for task in running]
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)

    async def run_until_idle(self, max_rounds: int = 1000) -> None:
        """Dispatch and drain until nothing is due now (tests drive the clock around this)."""
        for _ in range(max_rounds):
            if await self.dispatch_due() == 0 and not any(self._in_flight.values()):
                return
            await self.drain()

    async def run(self) -> None:
        """Dispatch due deliveries until cancelled; in-flight attempts are released on exit."""
        released = await asyncio.to_thread(queue.release_claims, self.registry, self.clock())
        if released:
            logger.info("Released unfinished deliveries for retry.", extra={"count": released})
        try:
            while True:
                try:
                    await self.dispatch_due()
                except Exception as error:  # the registry may be locked or gone for a moment
                    logger.error(
                        "Webhook dispatch failed; retrying.", extra={"error": str(error)[:300]}
                    )
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), self.policy.poll_seconds)
        finally:
            tasks = [task for running in self._in_flight.values() for task in running]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            with contextlib.suppress(Exception):
                await asyncio.to_thread(queue.release_claims, self.registry, self.clock())
            if self._owns_client:
                await self.client.aclose()

    async def _deliver(
        self, endpoint: WebhookEndpoint, secret: str, delivery: queue.DueDelivery
    ) -> None:
        attempts = delivery.attempts + 1
        try:
            outcome = await self.attempt(endpoint, secret, delivery)
        except Exception as error:  # an unexpected client error must not leave the row claimed
            logger.exception(
                "Webhook attempt failed unexpectedly.", extra={"delivery_id": delivery.delivery_id}
            )
            outcome = Outcome(
                delivered=False, retryable=True, error=f"unexpected error: {type(error).__name__}"
            )
        now = self.clock()
        log = {
            "key_prefix": endpoint.key_prefix,
            "endpoint_id": endpoint.endpoint_id,
            "delivery_id": delivery.delivery_id,
            "attempts": attempts,
        }
        if outcome.delivered:
            await asyncio.to_thread(
                queue.mark_delivered,
                self.registry,
                delivery.delivery_id,
                attempts,
                outcome.code or 0,
                now,
            )
            logger.debug("Delivered webhook.", extra={**log, "status": outcome.code})
            return
        error = outcome.error or f"HTTP {outcome.code}"
        if outcome.retryable and attempts < self.policy.max_attempts:
            delay = self.policy.backoff(attempts, self.rng)
            if outcome.retry_after is not None:
                delay = min(max(delay, outcome.retry_after), self.policy.retry_after_max_seconds)
            await asyncio.to_thread(
                queue.schedule_retry,
                self.registry,
                delivery.delivery_id,
                attempts,
                error,
                outcome.code,
                now + delay,
                now,
            )
            logger.info(
                "Retrying webhook after error.",
                extra={**log, "error": error, "delay_seconds": round(delay, 3)},
            )
            return
        await asyncio.to_thread(
            queue.mark_dead, self.registry, delivery.delivery_id, attempts, error, outcome.code, now
        )
        logger.warning("Webhook delivery is dead.", extra={**log, "error": error})

    async def attempt(
        self, endpoint: WebhookEndpoint, secret: str, delivery: queue.DueDelivery
    ) -> Outcome:
        """Send one signed POST and classify the result; timeouts and transport errors become outcomes."""
        try:
            parsed = check_url(endpoint.url, self.network)
            address = await resolve_destination(parsed, self.network, self.resolver)
        except DestinationRejected as error:
            return Outcome(delivered=False, retryable=False, error=f"destination rejected: {error}")
        except OSError as error:
            return Outcome(delivered=False, retryable=True, error=f"DNS resolution failed: {error}")

        timestamp = int(self.clock())
        body = queue.event_body(delivery.delivery_id, delivery.event)
        url = httpx.URL(endpoint.url)
        default_port = 443 if parsed.scheme == "https" else 80
        host_header = parsed.host if parsed.port == default_port else f"{parsed.host}:{parsed.port}"
        if ":" in parsed.host and parsed.port == default_port:
            host_header = f"[{parsed.host}]"
        elif ":" in parsed.host:
            host_header = f"[{parsed.host}]:{parsed.port}"
        headers = {
            "Host": host_header,
            "Content-Type": "application/json",
            "User-Agent": self.policy.user_agent,
            "Tracker-Delivery-Id": delivery.delivery_id,
            "Tracker-Timestamp": str(timestamp),
            "Tracker-Signature": sign(secret, timestamp, body),
        }
        extensions = {"sni_hostname": parsed.host} if parsed.scheme == "https" else {}
        request = self.client.build_request(
            "POST",
            url.copy_with(host=str(address)),
            content=body,
            headers=headers,
            timeout=self.policy.timeout_seconds,
            extensions=extensions,
        )
        try:
            async with asyncio.timeout(self.policy.timeout_seconds):
                response = await self.client.send(request, stream=True, follow_redirects=False)
                try:
                    await self._read_capped(response)
                finally:
                    await response.aclose()
        except (TimeoutError, httpx.TimeoutException):
            return Outcome(
                delivered=False,
                retryable=True,
                error=f"timed out after {self.policy.timeout_seconds:g} s",
            )
        except httpx.TransportError as error:
            return Outcome(
                delivered=False,
                retryable=True,
                error=f"connection failed: {type(error).__name__}: {error}"[:300],
            )

        code = response.status_code
        if 200 <= code < 300:
            return Outcome(delivered=True, retryable=False, code=code)
        if code == 429 or code >= 500:
            retry_after = parse_retry_after(response.headers.get("Retry-After"), self.clock())
            return Outcome(
                delivered=False,
                retryable=True,
                code=code,
                error=f"HTTP {code}",
                retry_after=retry_after,
            )
        if 300 <= code < 400:
            return Outcome(
                delivered=False,
                retryable=False,
                code=code,
                error=f"HTTP {code}: redirects are not followed",
            )
        return Outcome(delivered=False, retryable=False, code=code, error=f"HTTP {code}")

    async def _read_capped(self, response: httpx.Response) -> int:
        # Only the status matters; read a little so keep-alive works, never a huge body.
        received = 0
        async for chunk in response.aiter_raw():
            received += len(chunk)
            if received >= self.policy.max_response_bytes:
                break
        return received
