"""The webhook consumer's persistent delivery queue: rows of `webhook_deliveries`.

Scheduling lives in the database (`status`, `next_attempt_at`), so a restarted
consumer continues every retry where the last one stopped. All functions block;
the async callers run them in a worker thread.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from tracker.registry.webhooks import WebhookEndpoint

__all__ = [
    "DueDelivery",
    "NewDelivery",
    "claim_due",
    "enqueue",
    "load_targets",
    "mark_dead",
    "mark_delivered",
    "release_claims",
    "schedule_retry",
]

MAX_ERROR_LENGTH = 500


@dataclass(frozen=True, slots=True)
class NewDelivery:
    """One event to send to one endpoint."""

    delivery_id: str
    endpoint_id: str
    key_prefix: str
    event_id: str
    event: bytes


@dataclass(frozen=True, slots=True)
class DueDelivery:
    """A claimed delivery with what the attempt needs."""

    delivery_id: str
    endpoint_id: str
    event_id: str
    event: bytes
    attempts: int


def load_targets(registry: Any) -> list[tuple[WebhookEndpoint, str]]:
    """Return every active endpoint with its signing secret."""
    from tracker.registry.webhooks import _ENDPOINT_COLUMNS, _row_to_endpoint

    rows = registry.connection().execute(
        f"SELECT {_ENDPOINT_COLUMNS}, secret FROM webhook_endpoints WHERE status = 'active'"
    )
    return [(_row_to_endpoint(row[:-1]), row[-1]) for row in rows]


def _ceil_seconds(value: float) -> int:
    return math.ceil(value)


def enqueue(registry: Any, deliveries: Sequence[NewDelivery], now: float) -> int:
    """Insert deliveries due now; an (endpoint, event) pair already stored is left alone.

    Returns the number of rows inserted.
    """
    if not deliveries:
        return 0
    stamp = int(now)
    with registry.transaction() as connection:
        before = connection.total_changes
        connection.executemany(
            "INSERT OR IGNORE INTO webhook_deliveries (delivery_id, endpoint_id, key_prefix, event_id, event,"
            " status, attempts, next_attempt_at, created_at, updated_at)"
            " VALUES (?, ?, ?, ?, ?, 'pending', 0, ?, ?, ?)",
            [
                (
                    d.delivery_id,
                    d.endpoint_id,
                    d.key_prefix,
                    d.event_id,
                    d.event.decode("utf-8"),
                    stamp,
                    stamp,
                    stamp,
                )
                for d in deliveries
            ],
        )
        return connection.total_changes - before


def claim_due(registry: Any, endpoint_id: str, now: float, limit: int) -> list[DueDelivery]:
    """Mark up to `limit` due pending deliveries of one endpoint as delivering and return them."""
    if limit <= 0:
        return []
    with registry.transaction() as connection:
        rows = connection.execute(
            "SELECT delivery_id, endpoint_id, event_id, event, attempts FROM webhook_deliveries"
            " WHERE endpoint_id = ? AND status = 'pending' AND next_attempt_at <= ?"
            " ORDER BY next_attempt_at, created_at LIMIT ?",
            (endpoint_id, now, limit),
        ).fetchall()
        connection.executemany(
            "UPDATE webhook_deliveries SET status = 'delivering', updated_at = ? WHERE delivery_id = ?",
            [(int(now), row[0]) for row in rows],
        )
    return [DueDelivery(row[0], row[1], row[2], row[3].encode("utf-8"), row[4]) for row in rows]


def release_claims(registry: Any, now: float, *, older_than: float | None = None) -> int:
    """Put deliveries left in `delivering` back to pending, due now; return how many.

    With `older_than` (Unix seconds), only claims last touched before it, which
    keeps the claims of another live consumer process.
    """
    sql = "UPDATE webhook_deliveries SET status = 'pending', next_attempt_at = ?, updated_at = ? WHERE status = 'delivering'"
    args: list[Any] = [int(now), int(now)]
    if older_than is not None:
        sql += " AND updated_at < ?"
        args.append(int(older_than))
    with registry.transaction() as connection:
        return connection.execute(sql, args).rowcount


def _finish(
    registry: Any,
    delivery_id: str,
    status: str,
    attempts: int,
    error: str | None,
    code: int | None,
    next_at: int | None,
    now: float,
) -> None:
    with registry.transaction() as connection:
        connection.execute(
            "UPDATE webhook_deliveries SET status = ?, attempts = ?, last_error = ?, response_code = ?,"
            " next_attempt_at = ?, updated_at = ? WHERE delivery_id = ?",
            (
                status,
                attempts,
                error[:MAX_ERROR_LENGTH] if error else None,
                code,
                next_at,
                int(now),
                delivery_id,
            ),
        )


def mark_delivered(registry: Any, delivery_id: str, attempts: int, code: int, now: float) -> None:
    """Record a delivery that got a 2xx response."""
    _finish(registry, delivery_id, "delivered", attempts, None, code, None, now)


def schedule_retry(
    registry: Any,
    delivery_id: str,
    attempts: int,
    error: str,
    code: int | None,
    next_attempt_at: float,
    now: float,
) -> None:
    """Record a failed attempt and when to try again (rounded up to whole seconds)."""
    _finish(
        registry, delivery_id, "pending", attempts, error, code, _ceil_seconds(next_attempt_at), now
    )


def mark_dead(
    registry: Any, delivery_id: str, attempts: int, error: str, code: int | None, now: float
) -> None:
    """Give up on a delivery; it stays listed as a dead letter until replayed."""
    _finish(registry, delivery_id, "dead", attempts, error, code, None, now)


def event_body(delivery_id: str, event: bytes) -> bytes:
    """Return the POST body `{"delivery_id": ..., "event": {...}}` with the event bytes as stored."""
    return orjson.dumps({"delivery_id": delivery_id, "event": orjson.Fragment(event)})
