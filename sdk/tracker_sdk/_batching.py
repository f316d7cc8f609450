"""Pieces shared by the thread and asyncio clients: event checks, retry policy, outcomes.

The clients only do I/O and waiting; every decision about a `/batch` response (deliver,
retry after a delay, split, give up) is made here so both clients behave the same.
"""

from __future__ import annotations

import email.utils
import logging
import random
import re
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import Enum

import httpx

from tracker_sdk import _wire
from tracker_sdk.errors import InvalidEventError

logger = logging.getLogger("tracker_sdk.client")

# The platform's default event limits (EventLimits in the ingest service).
MAX_PARAMS = 64
MAX_PARAM_KEY_LEN = 128
MAX_PARAM_VALUE_LEN = 2048
_EVENT_TYPE = re.compile(r"[A-Za-z0-9_.:-]{1,64}")

RETRYABLE_STATUSES = frozenset({408, 425, 429})
# Top-level event fields a /batch event may set besides event_type, params and event_id.
# The ingest service fills any that are absent from the request's own headers.
EVENT_FIELDS = ("ip", "user_agent", "referer", "accept_language")
OVERFLOW_POLICIES = ("drop_oldest", "block")


def make_event(
    event_type: str,
    params: Mapping[str, str] | None,
    key_prefix: str,
    event_id: str,
    fields: Mapping[str, str] | None = None,
) -> dict[str, object]:
    """Check an event against the platform's limits and return its `/batch` JSON object.

    `fields` may set `ip`, `user_agent`, `referer` and `accept_language` of the end user
    on whose behalf the event is sent.
    """
    if not isinstance(event_type, str) or not _EVENT_TYPE.fullmatch(event_type):
        raise InvalidEventError(
            "event_type",
            f"invalid value {_wire._clip(event_type)!r}: expected 1 to 64 of [A-Za-z0-9_.:-]",
        )
    merged: dict[str, str] = {}
    for name, value in (params or {}).items():
        if not isinstance(name, str) or not isinstance(value, str):
            raise InvalidEventError(f"params.{_wire._clip(name)}", "names and values must be str")
        if not 0 < len(name) <= MAX_PARAM_KEY_LEN:
            raise InvalidEventError(
                f"params.{_wire._clip(name)}",
                f"name length must be 1 to {MAX_PARAM_KEY_LEN} characters",
            )
        if len(value) > MAX_PARAM_VALUE_LEN:
            raise InvalidEventError(
                f"params.{_wire._clip(name)}",
                f"value is {len(value)} characters, the maximum is {MAX_PARAM_VALUE_LEN}",
            )
        merged[name] = value
    merged["key_prefix"] = key_prefix
    if len(merged) > MAX_PARAMS:
        raise InvalidEventError(
            "params", f"{len(merged)} params including key_prefix, the maximum is {MAX_PARAMS}"
        )
    event: dict[str, object] = {"event_id": event_id, "event_type": event_type, "params": merged}
    for name, value in (fields or {}).items():
        if name not in EVENT_FIELDS:
            raise InvalidEventError(
                name, f"unknown event field: expected one of {', '.join(EVENT_FIELDS)}"
            )
        if not isinstance(value, str):
            raise InvalidEventError(name, "must be str")
        if len(value) > MAX_PARAM_VALUE_LEN:
            raise InvalidEventError(
                name, f"is {len(value)} characters, the maximum is {MAX_PARAM_VALUE_LEN}"
            )
        event[name] = value
    return event


@dataclass
class ClientStats:
    """Event counters of one client since it was created."""

    queued: int = 0
    delivered: int = 0
    """Events the platform accepted."""
    rejected: int = 0
    """Events the platform refused one by one (listed in `rejected`); never retried."""
    dropped_overflow: int = 0
    """Events discarded because the buffer was full."""
    dropped_invalid: int = 0
    """Events that failed the checks in track() with raise_errors=False."""
    failed: int = 0
    """Events given up on after a non-retryable response or after the last retry."""
    retries: int = 0
    """Batch send attempts after the first one."""
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def add(self, **counts: int) -> None:
        with self._lock:
            for name, count in counts.items():
                setattr(self, name, getattr(self, name) + count)

    def snapshot(self) -> ClientStats:
        with self._lock:
            return ClientStats(
                queued=self.queued,
                delivered=self.delivered,
                rejected=self.rejected,
                dropped_overflow=self.dropped_overflow,
                dropped_invalid=self.dropped_invalid,
                failed=self.failed,
                retries=self.retries,
            )


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Exponential backoff with full jitter; all durations in seconds."""

    max_retries: int = 5
    base_delay: float = 0.5
    max_delay: float = 30.0
    max_retry_after: float = 60.0
    """Upper bound on a server's Retry-After, so one response cannot stall the client."""

    def backoff(self, attempt: int, rng: random.Random) -> float:
        """Return a delay drawn uniformly from [0, min(max_delay, base_delay * 2**attempt)]."""
        ceiling = min(self.max_delay, self.base_delay * (2 ** min(attempt, 32)))
        return rng.uniform(0.0, ceiling)


class Action(Enum):
    DONE = "done"
    RETRY = "retry"
    SPLIT = "split"
    GIVE_UP = "give_up"


@dataclass(frozen=True, slots=True)
class Decision:
    action: Action
    delay: float = 0.0


def decide(
    response: httpx.Response | None,
    error: Exception | None,
    batch: list[dict[str, object]],
    attempt: int,
    policy: RetryPolicy,
    rng: random.Random,
    stats: ClientStats,
    wall_clock: Callable[[], float],
) -> Decision:
    """Classify one attempt to send `batch`, update `stats` and log, and return what to do next.

    `attempt` counts from 0. Connection errors, 408/425/429 and 5xx are retried; 413 splits
    the batch; any other response is final.
    """
    if response is not None and response.is_success:
        _record_delivery(response, batch, stats)
        return Decision(Action.DONE)

    if response is not None and response.status_code == 413 and len(batch) > 1:
        logger.warning(
            "Batch too large for the server; splitting it.", extra={"events": len(batch)}
        )
        return Decision(Action.SPLIT)

    retryable = response is None or (
        response.status_code in RETRYABLE_STATUSES or response.status_code >= 500
    )
    status = None if response is None else response.status_code
    if not retryable or attempt >= policy.max_retries:
        stats.add(failed=len(batch))
        logger.error(
            "Batch delivery failed; dropping its events.",
            extra={
                "events": len(batch),
                "status": status,
                "error": _error_text(response, error),
                "attempts": attempt + 1,
            },
        )
        return Decision(Action.GIVE_UP)

    delay = policy.backoff(attempt, rng)
    retry_after = None if response is None else _retry_after(response, wall_clock)
    if retry_after is not None:
        delay = min(retry_after, policy.max_retry_after)
    stats.add(retries=1)
    logger.warning(
        "Batch delivery failed; retrying after a delay.",
        extra={
            "events": len(batch),
            "status": status,
            "error": _error_text(response, error),
            "delay_s": round(delay, 3),
            "attempt": attempt + 1,
        },
    )
    return Decision(Action.RETRY, delay)


def _record_delivery(
    response: httpx.Response, batch: list[dict[str, object]], stats: ClientStats
) -> None:
    try:
        body = response.json()
        rejected = body.get("rejected") or []
        accepted = int(body.get("accepted", len(batch) - len(rejected)))
    except (ValueError, AttributeError, TypeError):
        logger.warning(
            "Batch response is not the expected JSON; counting all events as delivered.",
            extra={"events": len(batch), "status": response.status_code},
        )
        stats.add(delivered=len(batch))
        return

    stats.add(delivered=accepted, rejected=len(rejected))
    if rejected:
        logger.warning(
            "Server rejected events in a batch; they will not be retried.",
            extra={"events": len(batch), "rejected": len(rejected)},
        )
    for item in rejected:
        index = item.get("index") if isinstance(item, dict) else None
        event_id = (
            batch[index]["event_id"] if isinstance(index, int) and 0 <= index < len(batch) else None
        )
        logger.debug("Event rejected.", extra={"event_id": event_id, "rejection": item})


def _retry_after(response: httpx.Response, wall_clock: Callable[[], float]) -> float | None:
    value = response.headers.get("retry-after")
    if value is None:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        moment = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, moment.timestamp() - wall_clock())


def _error_text(response: httpx.Response | None, error: Exception | None) -> str:
    if error is not None:
        return f"{type(error).__name__}: {_wire._clip(str(error), 200)}"
    if response is None:
        return ""
    try:
        body = response.json()
        detail = body.get("error", body) if isinstance(body, dict) else body
        code = detail.get("code") if isinstance(detail, dict) else None
        return str(code or response.reason_phrase)
    except ValueError:
        return response.reason_phrase


def split(
    batch: list[dict[str, object]],
) -> tuple[list[dict[str, object]], list[dict[str, object]]]:
    middle = len(batch) // 2
    return batch[:middle], batch[middle:]
