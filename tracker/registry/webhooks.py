"""Webhook endpoints and deliveries in the registry: the functions the API and the consumer share.

Tables are defined in `schema/020_webhooks.sql`. Functions that take `key_prefix`
act only on that tenant's rows when it is given (an API key of a tenant), and on
every tenant when it is None (an admin key). Invalid input raises ValueError with
a message that starts with the field name; unknown ids raise NotFound.

A delivery id is derived from (endpoint id, event id), so the receiver sees the
same `Tracker-Delivery-Id` however often the broker redelivers the event.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import orjson

from tracker.consumers.ssrf import NetworkPolicy, check_url
from tracker.errors import Conflict, NotFound

__all__ = [
    "DELIVERY_STATUSES",
    "MAX_EVENT_TYPES",
    "MAX_PARAM_FILTERS",
    "CreatedEndpoint",
    "Delivery",
    "WebhookEndpoint",
    "create_endpoint",
    "delete_endpoint",
    "delivery_id_for",
    "get_delivery",
    "get_endpoint",
    "list_dead_letters",
    "list_deliveries",
    "list_endpoints",
    "replay",
    "set_endpoint_status",
]

DeliveryStatus = Literal["pending", "delivering", "delivered", "dead"]
DELIVERY_STATUSES: tuple[DeliveryStatus, ...] = ("pending", "delivering", "delivered", "dead")
EndpointStatus = Literal["active", "disabled"]

MAX_EVENT_TYPES = 32
MAX_PARAM_FILTERS = 16
MAX_PARAM_KEY_LENGTH = 128
MAX_PARAM_VALUE_LENGTH = 2048
MAX_DESCRIPTION_LENGTH = 500
MAX_LIST_LIMIT = 1000
SECRET_TEXT_PREFIX = "whsec_"

_EVENT_TYPE_PATTERN = re.compile(r"[A-Za-z0-9_.:-]{1,64}")
_ENDPOINT_ID_PATTERN = re.compile(r"wh_[0-9a-f]{24}")


def _now() -> int:
    return int(time.time())


@dataclass(frozen=True, slots=True)
class WebhookEndpoint:
    """A registered endpoint without its secret."""

    endpoint_id: str
    key_prefix: str
    url: str
    event_types: tuple[str, ...] = ()
    param_filters: Mapping[str, str] = field(default_factory=dict)
    description: str = ""
    status: EndpointStatus = "active"
    created_at: int = 0
    updated_at: int = 0

    def matches(self, event: Mapping[str, Any]) -> bool:
        """Return whether `event` passes the endpoint's event type and param filters."""
        if self.event_types and event.get("event_type") not in self.event_types:
            return False
        params = event.get("params") or {}
        return all(params.get(key) == value for key, value in self.param_filters.items())

    def to_dict(self) -> dict[str, Any]:
        return {
            "endpoint_id": self.endpoint_id,
            "key_prefix": self.key_prefix,
            "url": self.url,
            "event_types": list(self.event_types),
            "param_filters": dict(self.param_filters),
            "description": self.description,
            "status": self.status,
            "created_at": self.created_at,
            "updated_at": self.updated_at,
        }


@dataclass(frozen=True, slots=True)
class CreatedEndpoint:
    """A new endpoint and its signing secret, which list and get never return."""

    endpoint: WebhookEndpoint
    secret: str


@dataclass(frozen=True, slots=True)
class Delivery:
    """One (endpoint, event) delivery and where it stands."""

    delivery_id: str
    endpoint_id: str
    key_prefix: str
    event_id: str
    status: DeliveryStatus
    attempts: int
    last_error: str | None
    response_code: int | None
    next_attempt_at: int | None
    created_at: int
    updated_at: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "delivery_id": self.delivery_id,
            "endpoint_id": self.endpoint_id,
            "key_prefix": self.key_prefix,
            "event_id": self.event_id,
            "status": self.status,
            "attempts": self.attempts,
            "last_error": self.last_error,
            "response_code": self.response_code,
            "next_attempt_at": self.next_attempt_at,
            "created_at": self.created_at,
            "updated_at": self.updated_at,
        }


def delivery_id_for(endpoint_id: str, event_id: str) -> str:
    """Return the stable delivery id of one event sent to one endpoint."""
    digest = hashlib.sha256(f"{endpoint_id}\n{event_id}".encode()).hexdigest()
    return f"dlv_{digest[:32]}"


def _validate_event_types(event_types: Iterable[str]) -> tuple[str, ...]:
    if isinstance(event_types, str):
        raise ValueError("event_types: expected a list of event types, got a string")
    values = tuple(dict.fromkeys(event_types))
    if len(values) > MAX_EVENT_TYPES:
        raise ValueError(f"event_types: {len(values)} given, the maximum is {MAX_EVENT_TYPES}")
    for value in values:
        if not isinstance(value, str) or not _EVENT_TYPE_PATTERN.fullmatch(value):
            raise ValueError(
                f"event_types: invalid event type {str(value)[:50]!r}; expected 1 to 64 of A-Z a-z 0-9 _ . : -"
            )
    return values


def _validate_param_filters(param_filters: Mapping[str, str]) -> dict[str, str]:
    if not isinstance(param_filters, Mapping):
        raise ValueError("param_filters: expected an object of param key to value")
    if len(param_filters) > MAX_PARAM_FILTERS:
        raise ValueError(
            f"param_filters: {len(param_filters)} given, the maximum is {MAX_PARAM_FILTERS}"
        )
    filters: dict[str, str] = {}
    for key, value in param_filters.items():
        if not isinstance(key, str) or not 1 <= len(key) <= MAX_PARAM_KEY_LENGTH:
            raise ValueError(f"param_filters: keys must be 1 to {MAX_PARAM_KEY_LENGTH} characters")
        if not isinstance(value, str) or len(value) > MAX_PARAM_VALUE_LENGTH:
            raise ValueError(
                f"param_filters: value of {key[:50]!r} must be a string of at most {MAX_PARAM_VALUE_LENGTH} characters"
            )
        filters[key] = value
    return filters


_ENDPOINT_COLUMNS = "endpoint_id, key_prefix, url, event_types, param_filters, description, status, created_at, updated_at"


def _row_to_endpoint(row: Sequence[Any]) -> WebhookEndpoint:
    return WebhookEndpoint(
        endpoint_id=row[0],
        key_prefix=row[1],
        url=row[2],
        event_types=tuple(orjson.loads(row[3])),
        param_filters=orjson.loads(row[4]),
        description=row[5],
        status=row[6],
        created_at=row[7],
        updated_at=row[8],
    )


def create_endpoint(
    registry: Any,
    *,
    key_prefix: str,
    url: str,
    event_types: Iterable[str] = (),
    param_filters: Mapping[str, str] | None = None,
    description: str = "",
    policy: NetworkPolicy | None = None,
) -> CreatedEndpoint:
    """Register an endpoint for a tenant and return it with its new secret.

    `policy` rejects URLs whose literal IP host is not allowed (pass the
    consumer's `NetworkPolicy.from_env(load_env())`); host names are checked at
    each delivery. Raises NotFound for an unknown tenant.
    """
    check_url(url, policy or NetworkPolicy())
    types = _validate_event_types(event_types)
    filters = _validate_param_filters(param_filters or {})
    if not isinstance(description, str) or len(description) > MAX_DESCRIPTION_LENGTH:
        raise ValueError(
            f"description: must be a string of at most {MAX_DESCRIPTION_LENGTH} characters"
        )

    endpoint_id = f"wh_{secrets.token_hex(12)}"
    secret = SECRET_TEXT_PREFIX + secrets.token_urlsafe(32)
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
            f"INSERT INTO webhook_endpoints ({_ENDPOINT_COLUMNS}, secret) VALUES (?, ?, ?, ?, ?, ?, 'active', ?, ?, ?)",
            (
                endpoint_id,
                key_prefix,
                url,
                orjson.dumps(list(types)).decode(),
                orjson.dumps(filters).decode(),
                description,
                now,
                now,
                secret,
            ),
        )
    endpoint = WebhookEndpoint(
        endpoint_id=endpoint_id,
        key_prefix=key_prefix,
        url=url,
        event_types=types,
        param_filters=filters,
        description=description,
        created_at=now,
        updated_at=now,
    )
    return CreatedEndpoint(endpoint=endpoint, secret=secret)


def get_endpoint(
    registry: Any, endpoint_id: str, *, key_prefix: str | None = None
) -> WebhookEndpoint:
    """Return one endpoint; with `key_prefix`, only if it belongs to that tenant."""
    row = (
        registry.connection()
        .execute(
            f"SELECT {_ENDPOINT_COLUMNS} FROM webhook_endpoints WHERE endpoint_id = ?",
            (endpoint_id,),
        )
        .fetchone()
    )
    if row is None or (key_prefix is not None and row[1] != key_prefix):
        raise NotFound(f"webhook endpoint {str(endpoint_id)[:50]!r} not found")
    return _row_to_endpoint(row)


def list_endpoints(registry: Any, key_prefix: str | None = None) -> list[WebhookEndpoint]:
    """List a tenant's endpoints, or every endpoint when `key_prefix` is None, oldest first."""
    sql = f"SELECT {_ENDPOINT_COLUMNS} FROM webhook_endpoints"
    args: list[Any] = []
    if key_prefix is not None:
        sql += " WHERE key_prefix = ?"
        args.append(key_prefix)
    sql += " ORDER BY created_at, endpoint_id"
    return [_row_to_endpoint(row) for row in registry.connection().execute(sql, args)]


def set_endpoint_status(
    registry: Any, endpoint_id: str, status: EndpointStatus, *, key_prefix: str | None = None
) -> WebhookEndpoint:
    """Enable or disable an endpoint; a disabled endpoint gets no new deliveries."""
    if status not in ("active", "disabled"):
        raise ValueError(f"status: must be active or disabled, got {str(status)[:50]!r}")
    get_endpoint(registry, endpoint_id, key_prefix=key_prefix)
    with registry.transaction() as connection:
        connection.execute(
            "UPDATE webhook_endpoints SET status = ?, updated_at = ? WHERE endpoint_id = ?",
            (status, _now(), endpoint_id),
        )
    return get_endpoint(registry, endpoint_id)


def delete_endpoint(registry: Any, endpoint_id: str, *, key_prefix: str | None = None) -> None:
    """Delete an endpoint and its delivery history."""
    with registry.transaction() as connection:
        row = connection.execute(
            "SELECT key_prefix FROM webhook_endpoints WHERE endpoint_id = ?", (endpoint_id,)
        ).fetchone()
        if row is None or (key_prefix is not None and row[0] != key_prefix):
            raise NotFound(f"webhook endpoint {str(endpoint_id)[:50]!r} not found")
        connection.execute("DELETE FROM webhook_endpoints WHERE endpoint_id = ?", (endpoint_id,))


_DELIVERY_COLUMNS = (
    "delivery_id, endpoint_id, key_prefix, event_id, status, attempts, last_error, response_code,"
    " next_attempt_at, created_at, updated_at"
)


def _row_to_delivery(row: Sequence[Any]) -> Delivery:
    return Delivery(*row)


def get_delivery(registry: Any, delivery_id: str, *, key_prefix: str | None = None) -> Delivery:
    """Return one delivery; with `key_prefix`, only if it belongs to that tenant."""
    row = (
        registry.connection()
        .execute(
            f"SELECT {_DELIVERY_COLUMNS} FROM webhook_deliveries WHERE delivery_id = ?",
            (delivery_id,),
        )
        .fetchone()
    )
    if row is None or (key_prefix is not None and row[2] != key_prefix):
        raise NotFound(f"webhook delivery {str(delivery_id)[:50]!r} not found")
    return _row_to_delivery(row)


def list_deliveries(
    registry: Any,
    *,
    key_prefix: str | None = None,
    endpoint_id: str | None = None,
    status: DeliveryStatus | None = None,
    limit: int = 100,
    before: int | None = None,
) -> list[Delivery]:
    """List deliveries newest first; `before` (Unix seconds of created_at) pages backwards."""
    if status is not None and status not in DELIVERY_STATUSES:
        raise ValueError(
            f"status: must be one of {', '.join(DELIVERY_STATUSES)}, got {str(status)[:50]!r}"
        )
    if not isinstance(limit, int) or not 1 <= limit <= MAX_LIST_LIMIT:
        raise ValueError(f"limit: must be an integer from 1 to {MAX_LIST_LIMIT}")
    conditions: list[str] = []
    args: list[Any] = []
    for column, value in (
        ("key_prefix", key_prefix),
        ("endpoint_id", endpoint_id),
        ("status", status),
    ):
        if value is not None:
            conditions.append(f"{column} = ?")
            args.append(value)
    if before is not None:
        conditions.append("created_at < ?")
        args.append(int(before))
    sql = f"SELECT {_DELIVERY_COLUMNS} FROM webhook_deliveries"
    if conditions:
        sql += " WHERE " + " AND ".join(conditions)
    sql += " ORDER BY created_at DESC, delivery_id DESC LIMIT ?"
    args.append(limit)
    return [_row_to_delivery(row) for row in registry.connection().execute(sql, args)]


def list_dead_letters(
    registry: Any,
    *,
    key_prefix: str | None = None,
    endpoint_id: str | None = None,
    limit: int = 100,
    before: int | None = None,
) -> list[Delivery]:
    """List deliveries that were given up on, newest first, with their last error."""
    return list_deliveries(
        registry,
        key_prefix=key_prefix,
        endpoint_id=endpoint_id,
        status="dead",
        limit=limit,
        before=before,
    )


def replay(registry: Any, delivery_id: str, *, key_prefix: str | None = None) -> Delivery:
    """Queue a dead or delivered delivery again, due now with a fresh attempt count.

    Raises Conflict while the delivery is still pending or in flight, because the
    consumer will send it anyway.
    """
    now = _now()
    with registry.transaction() as connection:
        row = connection.execute(
            "SELECT key_prefix, status FROM webhook_deliveries WHERE delivery_id = ?",
            (delivery_id,),
        ).fetchone()
        if row is None or (key_prefix is not None and row[0] != key_prefix):
            raise NotFound(f"webhook delivery {str(delivery_id)[:50]!r} not found")
        if row[1] in ("pending", "delivering"):
            raise Conflict(
                f"webhook delivery {delivery_id} is {row[1]}; only dead or delivered ones can be replayed"
            )
        connection.execute(
            "UPDATE webhook_deliveries SET status = 'pending', attempts = 0, next_attempt_at = ?, updated_at = ?"
            " WHERE delivery_id = ?",
            (now, now, delivery_id),
        )
    return get_delivery(registry, delivery_id)
