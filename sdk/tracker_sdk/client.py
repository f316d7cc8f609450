"""TrackerClient: buffers events in memory and sends them to `/batch` from a background thread.

Events get their UUIDv7 `event_id` when track() is called, so a batch sent again after a
lost response is deduplicated by the platform instead of counted twice.
"""

from __future__ import annotations

import atexit
import collections
import logging
import random
import threading
import time
from collections.abc import Callable, Mapping
from typing import Literal

import httpx

from tracker_sdk import _batching, _wire
from tracker_sdk._batching import Action, ClientStats, RetryPolicy
from tracker_sdk._uuid7 import uuid7
from tracker_sdk.errors import DeliveryError, InvalidEventError

logger = logging.getLogger("tracker_sdk.client")

Overflow = Literal["drop_oldest", "block"]
Event = dict[str, object]


class TrackerClient:
    """Thread-based batching client for `POST /batch`.

    track() never raises and never does I/O unless `raise_errors=True`, in which case it
    raises InvalidEventError, and flush()/close() raise DeliveryError when events failed.
    Durations are seconds. `sleep` and `wall_clock` exist so tests can run retries without
    waiting; `transport` lets tests route requests in-process.
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
        sleep: Callable[[float], None] | None = None,
        wall_clock: Callable[[], float] = time.time,
        rng: random.Random | None = None,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        _check_options(batch_size, flush_interval, max_buffer, overflow)
        self.key_prefix = _wire.check_key_prefix(key_prefix)
        self.batch_size = batch_size
        self.flush_interval = flush_interval
        self.max_buffer = max_buffer
        self.overflow = overflow
        self.raise_errors = raise_errors
        self.retry = retry or RetryPolicy()
        self._stats = ClientStats()
        self._rng = rng or random.Random()
        self._wall_clock = wall_clock
        self._closed_event = threading.Event()
        self._sleep = sleep or self._closed_event.wait
        self._http = httpx.Client(
            base_url=base_url.rstrip("/"), timeout=timeout, headers=headers, transport=transport
        )

        self._buffer: collections.deque[Event] = collections.deque()
        self._cond = threading.Condition()
        self._in_flight = 0
        self._flush_requested = False
        self._closing = False
        self._failed_since_flush = 0
        self._worker = threading.Thread(target=self._run, name="tracker-sdk-sender", daemon=True)
        self._worker.start()
        # A bound method: the atexit registry keeps the client alive until close().
        self._atexit = self._drain_at_exit
        atexit.register(self._atexit)

    # Public API.

    def track(
        self, event_type: str, params: Mapping[str, str] | None = None, **fields: str
    ) -> str | None:
        """Queue one event and return its event_id, or None if it was dropped.

        Keyword `fields` set the end user's `ip`, `user_agent`, `referer` or
        `accept_language`; without them the server records the SDK's own request headers.
        `params.key_prefix` is always the client's.
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

        with self._cond:
            if self._closing:
                logger.warning(
                    "Dropped an event tracked after close().", extra={"event_type": event_type}
                )
                self._stats.add(dropped_overflow=1)
                return None
            if len(self._buffer) >= self.max_buffer and not self._make_room():
                return None
            self._buffer.append(event)
            self._stats.add(queued=1)
            if len(self._buffer) >= self.batch_size:
                self._cond.notify_all()
        return event["event_id"]  # type: ignore[return-value]

    def flush(self, timeout: float | None = None) -> bool:
        """Send everything queued so far; return False if `timeout` seconds passed first."""
        with self._cond:
            self._flush_requested = True
            self._cond.notify_all()
            done = self._cond.wait_for(lambda: not self._buffer and not self._in_flight, timeout)
        self._raise_if_failed()
        return done

    def close(self, timeout: float | None = 30.0) -> None:
        """Flush, stop the sender thread and release the connection pool. Idempotent."""
        with self._cond:
            already = self._closing
            self._closing = True
            self._cond.notify_all()
        if not already:
            atexit.unregister(self._atexit)
            self._worker.join(timeout)
            if self._worker.is_alive():
                logger.error(
                    "Sender thread did not finish before the close timeout; queued events may be lost.",
                    extra={"queued": len(self._buffer)},
                )
            self._closed_event.set()
            self._http.close()
        self._raise_if_failed()

    @property
    def stats(self) -> ClientStats:
        """A consistent copy of the event counters."""
        return self._stats.snapshot()

    def __enter__(self) -> TrackerClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # Internals. Every method below that touches the buffer runs with self._cond held,
    # except _send, which must not hold it while doing I/O.

    def _make_room(self) -> bool:
        if self.overflow == "drop_oldest":
            self._buffer.popleft()
            self._count_overflow()
            return True
        self._cond.notify_all()
        self._cond.wait_for(lambda: len(self._buffer) < self.max_buffer or self._closing)
        if self._closing:
            self._count_overflow()
            return False
        return True

    def _count_overflow(self) -> None:
        self._stats.add(dropped_overflow=1)
        dropped = self._stats.dropped_overflow
        if dropped == 1 or dropped % 1000 == 0:
            logger.warning(
                "Buffer full; dropped events.",
                extra={"dropped_total": dropped, "max_buffer": self.max_buffer},
            )

    def _run(self) -> None:
        while True:
            with self._cond:
                self._cond.wait_for(
                    lambda: (
                        len(self._buffer) >= self.batch_size
                        or self._flush_requested
                        or self._closing
                    ),
                    self.flush_interval,
                )
                if not self._buffer:
                    self._flush_requested = False
                    self._cond.notify_all()
                    if self._closing:
                        return
                    continue
                count = min(self.batch_size, len(self._buffer))
                batch = [self._buffer.popleft() for _ in range(count)]
                self._in_flight = count
                self._cond.notify_all()
            try:
                self._send(batch)
            except Exception:  # the thread must survive anything so later events still go out
                logger.exception(
                    "Unexpected error while sending a batch.", extra={"events": len(batch)}
                )
                self._stats.add(failed=len(batch))
                self._note_failures(len(batch))
            finally:
                with self._cond:
                    self._in_flight = 0
                    self._cond.notify_all()

    def _send(self, batch: list[Event]) -> None:
        pending = [batch]
        while pending:
            current = pending.pop()
            attempt = 0
            while True:
                response, error = self._post(current)
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
                    self._sleep(decision.delay)
                    attempt += 1
                    continue
                if decision.action is Action.SPLIT:
                    pending.extend(reversed(_batching.split(current)))
                elif decision.action is Action.GIVE_UP:
                    self._note_failures(len(current))
                break

    def _post(self, batch: list[Event]) -> tuple[httpx.Response | None, Exception | None]:
        try:
            return self._http.post("/batch", json={"events": batch}), None
        except httpx.TransportError as error:
            return None, error

    def _note_failures(self, count: int) -> None:
        with self._cond:
            self._failed_since_flush += count

    def _raise_if_failed(self) -> None:
        with self._cond:
            failed, self._failed_since_flush = self._failed_since_flush, 0
        if failed and self.raise_errors:
            raise DeliveryError(
                f"{failed} events could not be delivered; see the log for the cause", failed=failed
            )

    def _drain_at_exit(self) -> None:
        try:
            self.close(timeout=10.0)
        except DeliveryError as error:
            logger.error("Events lost at interpreter exit.", extra={"failed": error.failed})


def _check_options(batch_size: int, flush_interval: float, max_buffer: int, overflow: str) -> None:
    if batch_size < 1:
        raise ValueError(f"invalid batch_size {batch_size}: expected at least 1")
    if flush_interval <= 0:
        raise ValueError(f"invalid flush_interval {flush_interval}: expected seconds > 0")
    if max_buffer < batch_size:
        raise ValueError(
            f"invalid max_buffer {max_buffer}: expected at least batch_size ({batch_size})"
        )
    if overflow not in _batching.OVERFLOW_POLICIES:
        raise ValueError(
            f"invalid overflow {overflow!r}: expected one of {_batching.OVERFLOW_POLICIES}"
        )
