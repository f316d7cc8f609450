"""The route table types: each route's method, path, scope, parameters and schemas, and the request context.

One `Route` list drives both the Robyn registration (`tracker.api.app`) and the
OpenAPI document (`tracker.api.openapi`), so the documented parameters are
exactly the ones a handler accepts.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import orjson

from tracker.api.errors import ApiError
from tracker.api.params import QueryArgs
from tracker.registry.api_keys import ApiKey, Scope

__all__ = ["Context", "Param", "Reply", "Route", "Services"]

T = TypeVar("T")

Reply = tuple[int, Any]
"""A handler's result: HTTP status and a JSON-serialisable body."""


@dataclass(frozen=True, slots=True)
class Param:
    """One query parameter: its name, JSON schema and description for the OpenAPI document."""

    name: str
    schema: dict[str, Any]
    description: str
    repeated: bool = False
    required: bool = False


@dataclass(frozen=True, slots=True)
class Route:
    """One endpoint. `scope` None means no API key is needed."""

    method: str
    path: str
    handler: Callable[[Context], Awaitable[Reply]]
    scope: Scope | None
    summary: str
    tag: str
    tenant_only: bool = False
    query: tuple[Param, ...] = ()
    query_prefixes: tuple[str, ...] = ()
    body: dict[str, Any] | None = None
    status: int = 200
    response: dict[str, Any] = field(default_factory=lambda: {"type": "object"})
    errors: tuple[int, ...] = ()

    @property
    def robyn_path(self) -> str:
        """The path in Robyn's syntax, `:name` where OpenAPI writes `{name}`."""
        return "/".join(
            f":{part[1:-1]}" if part.startswith("{") else part for part in self.path.split("/")
        )


@dataclass(slots=True)
class Services:
    """Shared state of the handlers: the registry, settings and the analytics router."""

    registry: Any
    settings: Any
    query_router: Any = None
    query_settings: Any = None
    webhook_policy: Any = None
    started_at_ms: int = 0


@dataclass(slots=True)
class Context:
    """One request in the form handlers receive: decoded query, path values, body and the caller's key."""

    services: Services
    route: Route
    args: QueryArgs
    path: dict[str, str]
    raw_body: bytes
    api_key: ApiKey | None = None

    @property
    def tenant(self) -> str:
        """Return the tenant of the caller's key; admin keys have none."""
        if self.api_key is None or self.api_key.key_prefix is None:
            raise ApiError(
                "forbidden",
                "authorization",
                "this endpoint acts on one tenant: use a read or write key of that tenant, not an admin key",
            )
        return self.api_key.key_prefix

    def json(self) -> dict[str, Any]:
        """Parse the body as a JSON object and reject fields the route's schema does not list."""
        if not self.raw_body.strip():
            document: Any = {}
        else:
            try:
                document = orjson.loads(self.raw_body)
            except orjson.JSONDecodeError as error:
                raise ApiError(
                    "invalid_json", "body", f"the body is not valid JSON (at byte {error.pos})"
                ) from None
        if not isinstance(document, dict):
            raise ApiError("invalid_json", "body", "the body must be a JSON object")

        schema = self.route.body or {}
        allowed = set(schema.get("properties", {}))
        unknown = [name for name in document if name not in allowed]
        if unknown:
            shown = ", ".join(str(name)[:50] for name in unknown[:10])
            raise ApiError(
                "unknown_field",
                str(unknown[0])[:50],
                f"unknown field(s) {shown}; expected {', '.join(sorted(allowed)) or 'no fields'}",
            )
        missing = [name for name in schema.get("required", ()) if name not in document]
        if missing:
            raise ApiError("missing_field", missing[0], f"{missing[0]} is required")
        return document

    async def call(self, function: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run a blocking registry function off the event loop."""
        return await asyncio.to_thread(function, *args, **kwargs)


def string_field(
    body: dict[str, Any], name: str, *, default: str | None = None, max_length: int
) -> str | None:
    """Return a string field of a body, checked for type and length."""
    value = body.get(name, default)
    if value is None:
        return None
    if not isinstance(value, str):
        raise ApiError("invalid_field", name, f"{name} must be a string")
    if len(value) > max_length:
        raise ApiError(
            "invalid_field",
            name,
            f"{name} is {len(value)} characters long, the maximum is {max_length}",
        )
    return value
