"""AsyncTrackerClient: the asyncio counterpart of TrackerClient, sending from one task.

Use it as `async with AsyncTrackerClient(...) as client:` or call `aclose()`. If the
program exits with events still queued and no running loop, an atexit hook sends them
with a blocking HTTP client, so they are not lost silently.
"""

from __future__ import annotations

import asyncio
import atexit
import collections
import contextlib
import logging
import random
import time
from collections.abc import Awaitable, Callable, Mapping

import httpx

from tracker_sdk import _batching, _wire
from tracker_sdk._batching import Action, ClientStats, RetryPolicy
from tracker_sdk._uuid7 import uuid7
from tracker_sdk.client import Event, Overflow, _check_options
from tracker_sdk.errors import DeliveryError, InvalidEventError

logger = logging.getLogger("tracker_sdk.client")


class AsyncTrackerClient:
    """Batching client for `POST /batch` on asyncio; the options match TrackerClient.

    `sleep` replaces asyncio.sleep for retry delays so tests need not wait.
    """

    def __init__(
        self,
        base_url: str,
        key_prefix: str,
        *,
        batch_size: int = 100,
        flush_interval: float = 1.0,
        max_buffer: int = 10_000,
        overflow: Overflow = "drop_oldest",
        retry: RetryPolicy | None = None,
        timeout: float = 10.0,
        raise_errors: bool = False,
        headers: Mapping[str, str] | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        wall_clock: Callable[[], float] = time.time,
        rng: random.Random | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        _check_options(batch_size, flush_interval, max_buffer, overflow)
        self.base_url = base_url.rstrip("/")
        self.key_prefix = _wire.check_key_prefix(key_prefix)
        self.batch_size = batch_size
        self.flush_interval = flush_interval
        self.max_buffer = max_buffer
        self.overflow = overflow
        self.raise_errors = raise_errors
        self.retry = retry or RetryPolicy()
        self._timeout = timeout
        self._headers = dict(headers or {})
        self._sleep = sleep
        self._wall_clock = wall_clock
        self._rng = rng or random.Random()
        self._stats = ClientStats()
        self._http = httpx.AsyncClient(
            base_url=self.base_url, timeout=timeout, headers=self._headers, transport=transport
        )

        self._buffer: collections.deque[Event] = collections.deque()
        self._changed: asyncio.Condition | None = None
        self._task: asyncio.Task[None] | None = None
        self._in_flight = 0
        self._flush_requested = False
        self._closing = False
        self._failed_since_flush = 0
        # A bound method: the atexit registry keeps the client alive until close().
        self._atexit = self._drain_at_exit
        atexit.register(self._atexit)

    async def track(
        self, event_type: str, params: Mapping[str, str] | None = None, **fields: str
    ) -> str | None:
        """Queue one event and return its event_id, or None if it was dropped.

        `fields` are as in TrackerClient.track(). With `overflow="block"` this waits for room
        in the buffer; otherwise it never waits.
        """
        try:
            event = _batching.make_event(event_type, params, self.key_prefix, uuid7(), fields)
        except InvalidEventError as error:
            self._stats.add(dropped_invalid=1)
            if self.raise_errors:
                raise
            logger.warning(
                "Dropped an invalid event.", extra={"field": error.field, "error": str(error)}
            )
            return None

        changed = self._start()
        async with changed:
            if self._closing:
                logger.warning(
                    "Dropped an event tracked after aclose().", extra={"event_type": event_type}
                )
                self._stats.add(dropped_overflow=1)
                return None
            if len(self._buffer) >= self.max_buffer:
                if self.overflow == "drop_oldest":
                    self._buffer.popleft()
                    self._count_overflow()
                else:
                    changed.notify_all()
                    await changed.wait_for(
                        lambda: len(self._buffer) < self.max_buffer or self._closing
                    )
                    if self._closing:
                        self._count_overflow()
                        return None
            self._buffer.append(event)
            self._stats.add(queued=1)
            if len(self._buffer) >= self.batch_size:
                changed.notify_all()
        return event["event_id"]  # type: ignore[return-value]

    async def flush(self) -> None:
        """Send everything queued so far and wait until it is delivered or given up on."""
        changed = self._start()
        async with changed:
            self._flush_requested = True
            changed.notify_all()
            await changed.wait_for(lambda: not self._buffer and not self._in_flight)
        self._raise_if_failed()

    async def aclose(self) -> None:
        """Flush, stop the sender task and release the connection pool. Idempotent."""
        if not self._closing:
            atexit.unregister(self._atexit)
            if self._changed is not None and self._task is not None:
                async with self._changed:
                    self._closing = True
                    self._changed.notify_all()
                await self._task
            self._closing = True
            await self._http.aclose()
        self._raise_if_failed()

    @property
    def stats(self) -> ClientStats:
        """A consistent copy of the event counters."""
        return self._stats.snapshot()

    async def __aenter__(self) -> AsyncTrackerClient:
        self._start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    # Internals.

    def _start(self) -> asyncio.Condition:
        if self._changed is None:
            self._changed = asyncio.Condition()
            self._task = asyncio.get_running_loop().create_task(
                self._run(self._changed), name="tracker-sdk-sender"
            )
        return self._changed

    def _count_overflow(self) -> None:
        self._stats.add(dropped_overflow=1)
        dropped = self._stats.dropped_overflow
        if dropped == 1 or dropped % 1000 == 0:
            logger.warning(
                "Buffer full; dropped events.",
                extra={"dropped_total": dropped, "max_buffer": self.max_buffer},
            )

    async def _run(self, changed: asyncio.Condition) -> None:
        while True:
            async with changed:
                # A timeout means the flush interval passed: send whatever is queued.
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(
                        changed.wait_for(
                            lambda: (
                                len(self._buffer) >= self.batch_size
                                or self._flush_requested
                                or self._closing
                            )
                        ),
                        self.flush_interval,
                    )
                if not self._buffer:
                    self._flush_requested = False
                    changed.notify_all()
                    if self._closing:
                        return
                    continue
                count = min(self.batch_size, len(self._buffer))
                batch = [self._buffer.popleft() for _ in range(count)]
                self._in_flight = count
                changed.notify_all()
            try:
                await self._send(batch)
            except Exception:  # the task must survive anything so later events still go out
                logger.exception(
                    "Unexpected error while sending a batch.", extra={"events": len(batch)}
                )
                self._stats.add(failed=len(batch))
                self._failed_since_flush += len(batch)
            finally:
                async with changed:
                    self._in_flight = 0
                    changed.notify_all()

    async def _send(self, batch: list[Event]) -> None:
        pending = [batch]
        while pending:
            current = pending.pop()
            attempt = 0
            while True:
                try:
                    response, error = (
                        await self._http.post("/batch", json={"events": current}),
                        None,
                    )
                except httpx.TransportError as caught:
                    response, error = None, caught
                decision = _batching.decide(
                    response,
                    error,
                    current,
                    attempt,
                    self.retry,
                    self._rng,
                    self._stats,
                    self._wall_clock,
                )
                if decision.action is Action.RETRY:
                    await self._sleep(decision.delay)
                    attempt += 1
                    continue
                if decision.action is Action.SPLIT:
                    pending.extend(reversed(_batching.split(current)))
                elif decision.action is Action.GIVE_UP:
                    self._failed_since_flush += len(current)
                break

    def _raise_if_failed(self) -> None:
        failed, self._failed_since_flush = self._failed_since_flush, 0
        if failed and self.raise_errors:
            raise DeliveryError(
                f"{failed} events could not be delivered; see the log for the cause", failed=failed
            )

    def _drain_at_exit(self) -> None:
        """Send what is still queued with a blocking client; used when no loop is left."""
        if not self._buffer:
            return
        logger.warning(
            "Async client was not closed; sending queued events at exit.",
            extra={"queued": len(self._buffer)},
        )
        events = list(self._buffer)
        self._buffer.clear()
        with httpx.Client(
            base_url=self.base_url, timeout=self._timeout, headers=self._headers
        ) as http:
            for start in range(0, len(events), self.batch_size):
                batch = events[start : start + self.batch_size]
                for attempt in range(self.retry.max_retries + 1):
                    try:
                        response, error = http.post("/batch", json={"events": batch}), None
                    except httpx.TransportError as caught:
                        response, error = None, caught
                    decision = _batching.decide(
                        response,
                        error,
                        batch,
                        attempt,
                        self.retry,
                        self._rng,
                        self._stats,
                        self._wall_clock,
                    )
                    if decision.action is Action.SPLIT:
                        # NOTE: no splitting at exit; the oversized batch is given up on.
                        self._stats.add(failed=len(batch))
                        logger.error(
                            "Batch too large at exit; dropping its events.",
                            extra={"events": len(batch)},
                        )
                    if decision.action is not Action.RETRY:
                        break
                    time.sleep(min(decision.delay, 2.0))
