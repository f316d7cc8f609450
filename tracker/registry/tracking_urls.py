"""Tracking URLs (short links `/t/<tu_id>`): create, read, rotate the destination, disable.

A destination must pass the same rule as a signed `/t` click
(`tracker.ingest.destinations.parse_destination`), so the redirect never goes
anywhere a signed link could not. Every change bumps `updated_at` (Unix
seconds), which the ingest cache polls.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import orjson

from tracker._core import uuid7
from tracker.errors import NotFound, RegistryError
from tracker.ingest.destinations import InvalidDestination, parse_destination

__all__ = [
    "TU_ID_PREFIX",
    "TrackingUrl",
    "create_tracking_url",
    "disable_tracking_url",
    "enable_tracking_url",
    "get_tracking_url",
    "list_tracking_urls",
    "load_tracking_urls",
    "rotate_destination",
    "validate_destination",
]

TU_ID_PREFIX = "tu_"
MAX_NAME_LEN = 200

_COLUMNS = "tu_id, key_prefix, destination, name, params, status, created_at, updated_at"


@dataclass(frozen=True, slots=True)
class TrackingUrl:
    """One short link: its id, tenant, current destination and fixed params."""

    tu_id: str
    key_prefix: str
    destination: str
    name: str
    params: dict[str, str]
    status: str
    created_at: int
    updated_at: int

    @property
    def active(self) -> bool:
        return self.status == "active"


def validate_destination(destination: str) -> str:
    """Return `destination` if a click may redirect to it; raise RegistryError saying why not."""
    try:
        parse_destination(destination)
    except InvalidDestination as error:
        raise RegistryError(f"invalid destination: {error}") from None
    return destination


def create_tracking_url(
    registry: Any,
    key_prefix: str,
    destination: str,
    *,
    name: str = "",
    params: dict[str, str] | None = None,
) -> TrackingUrl:
    """Insert a short link for an existing tenant; raise NotFound for an unknown tenant."""
    validate_destination(destination)
    fixed_params = _check_params(params or {})
    if len(name) > MAX_NAME_LEN:
        raise RegistryError(f"name is longer than {MAX_NAME_LEN} characters")
    tu_id = TU_ID_PREFIX + uuid7()
    now = _now()

    with registry.transaction() as connection:
        if (
            connection.execute(
                "SELECT 1 FROM tenants WHERE key_prefix = ?", (key_prefix,)
            ).fetchone()
            is None
        ):
            raise NotFound(f"tenant {str(key_prefix)[:50]!r} not found")
        connection.execute(
            f"INSERT INTO tracking_urls ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, 'active', ?, ?)",
            (tu_id, key_prefix, destination, name, orjson.dumps(fixed_params).decode(), now, now),
        )

    return TrackingUrl(
        tu_id=tu_id,
        key_prefix=key_prefix,
        destination=destination,
        name=name,
        params=fixed_params,
        status="active",
        created_at=now,
        updated_at=now,
    )


def get_tracking_url(registry: Any, tu_id: str) -> TrackingUrl:
    """Return one short link; raise NotFound if the id is unknown."""
    row = (
        registry.connection()
        .execute(f"SELECT {_COLUMNS} FROM tracking_urls WHERE tu_id = ?", (tu_id,))
        .fetchone()
    )
    if row is None:
        raise NotFound(f"tracking URL {str(tu_id)[:60]!r} not found")
    return _from_row(row)


def list_tracking_urls(registry: Any, *, key_prefix: str | None = None) -> list[TrackingUrl]:
    """Return short links, optionally of one tenant, newest first."""
    query = f"SELECT {_COLUMNS} FROM tracking_urls"
    arguments: tuple[str, ...] = ()
    if key_prefix is not None:
        query += " WHERE key_prefix = ?"
        arguments = (key_prefix,)
    rows = registry.connection().execute(query + " ORDER BY tu_id DESC", arguments).fetchall()
    return [_from_row(row) for row in rows]


def rotate_destination(registry: Any, tu_id: str, destination: str) -> TrackingUrl:
    """Point the short link at a new destination; links already handed out follow it."""
    validate_destination(destination)
    return _update(registry, tu_id, "destination", destination)


def disable_tracking_url(registry: Any, tu_id: str) -> TrackingUrl:
    """Disable the short link: clicks on it get 410 Gone from the next cache refresh."""
    return _update(registry, tu_id, "status", "disabled")


def enable_tracking_url(registry: Any, tu_id: str) -> TrackingUrl:
    """Enable a disabled short link again."""
    return _update(registry, tu_id, "status", "active")


def load_tracking_urls(registry: Any, *, changed_since: int | None = None) -> list[TrackingUrl]:
    """Return short links updated at or after `changed_since` (all of them without it).

    The comparison is inclusive so a change made in the same second as the
    previous load is not missed; callers merge by id.
    """
    connection = registry.connection()
    if changed_since is None:
        rows = connection.execute(f"SELECT {_COLUMNS} FROM tracking_urls").fetchall()
    else:
        rows = connection.execute(
            f"SELECT {_COLUMNS} FROM tracking_urls WHERE updated_at >= ?", (changed_since,)
        ).fetchall()
    return [_from_row(row) for row in rows]


def _update(registry: Any, tu_id: str, column: str, value: str) -> TrackingUrl:
    now = _now()
    with registry.transaction() as connection:
        # `column` comes from this module only, never from a caller.
        cursor = connection.execute(
            f"UPDATE tracking_urls SET {column} = ?, updated_at = ? WHERE tu_id = ?",
            (value, now, tu_id),
        )
        if cursor.rowcount == 0:
            raise NotFound(f"tracking URL {str(tu_id)[:60]!r} not found")
    return get_tracking_url(registry, tu_id)


def _check_params(params: dict[str, str]) -> dict[str, str]:
    for key, value in params.items():
        if not isinstance(key, str) or not isinstance(value, str) or not key:
            raise RegistryError("params must map non-empty strings to strings")
    return dict(params)


def _from_row(row: tuple) -> TrackingUrl:
    tu_id, key_prefix, destination, name, params, status, created_at, updated_at = row
    return TrackingUrl(
        tu_id=tu_id,
        key_prefix=key_prefix,
        destination=destination,
        name=name,
        params=orjson.loads(params) if params else {},
        status=status,
        created_at=created_at,
        updated_at=updated_at,
    )


def _now() -> int:
    return int(time.time())
