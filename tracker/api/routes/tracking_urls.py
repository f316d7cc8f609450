"""Tracking URLs (short links) of the caller's tenant: create, list, get, rotate destination, disable.

The ingest service polls the registry, so a change reaches redirects within
its REGISTRY_REFRESH_SECONDS.
"""

from __future__ import annotations

from typing import Any

from tracker.api.errors import ApiError, translate
from tracker.api.routes.schemas import TIMESTAMP, list_of
from tracker.api.routing import Context, Reply, Route
from tracker.errors import NotFound, RegistryError
from tracker.registry import tracking_urls
from tracker.registry.tracking_urls import TrackingUrl

__all__ = ["ROUTES"]

MAX_DESTINATION_LENGTH = 4096
MAX_PARAMS = 32
MAX_PARAM_KEY_LENGTH = 128
MAX_PARAM_VALUE_LENGTH = 2048

TRACKING_URL: dict[str, Any] = {
    "type": "object",
    "required": [
        "tu_id",
        "key_prefix",
        "destination",
        "name",
        "params",
        "status",
        "created_at",
        "updated_at",
    ],
    "properties": {
        "tu_id": {"type": "string"},
        "key_prefix": {"type": "string"},
        "destination": {"type": "string"},
        "name": {"type": "string"},
        "params": {"type": "object", "additionalProperties": {"type": "string"}},
        "status": {"type": "string", "enum": ["active", "disabled"]},
        "created_at": TIMESTAMP,
        "updated_at": TIMESTAMP,
    },
}


def _json(url: TrackingUrl) -> dict[str, Any]:
    return {
        "tu_id": url.tu_id,
        "key_prefix": url.key_prefix,
        "destination": url.destination,
        "name": url.name,
        "params": dict(url.params),
        "status": url.status,
        "created_at": url.created_at,
        "updated_at": url.updated_at,
    }


def _destination(body: dict[str, Any]) -> str:
    destination = body.get("destination")
    if not isinstance(destination, str) or not destination:
        raise ApiError("invalid_field", "destination", "destination must be an http(s) URL")
    if len(destination) > MAX_DESTINATION_LENGTH:
        raise ApiError(
            "invalid_field",
            "destination",
            f"destination is longer than {MAX_DESTINATION_LENGTH} characters",
        )
    try:
        tracking_urls.validate_destination(destination)
    except RegistryError as error:
        raise translate(error, field="destination") from error
    return destination


def _params(body: dict[str, Any]) -> dict[str, str]:
    params = body.get("params", {})
    if not isinstance(params, dict) or len(params) > MAX_PARAMS:
        raise ApiError(
            "invalid_field", "params", f"params must be an object of at most {MAX_PARAMS} strings"
        )
    for key, value in params.items():
        if not 1 <= len(key) <= MAX_PARAM_KEY_LENGTH or not isinstance(value, str):
            raise ApiError(
                "invalid_field",
                "params",
                f"params keys are 1 to {MAX_PARAM_KEY_LENGTH} characters, values strings",
            )
        if len(value) > MAX_PARAM_VALUE_LENGTH:
            raise ApiError(
                "invalid_field",
                "params",
                f"params values are at most {MAX_PARAM_VALUE_LENGTH} characters",
            )
    return params


async def _own(context: Context) -> TrackingUrl:
    """Return the tracking URL of the path if the caller's tenant owns it, else 404."""
    tu_id = context.path["tu_id"]
    url = await context.call(tracking_urls.get_tracking_url, context.services.registry, tu_id)
    if url.key_prefix != context.tenant:
        raise NotFound(f"tracking URL {tu_id[:60]!r} not found")
    return url


def _owner_for_create(context: Context, body: dict[str, Any]) -> str:
    """Return the tenant a new link belongs to: the key's own, or `key_prefix` for admin keys."""
    requested = body.get("key_prefix")
    if requested is not None and not isinstance(requested, str):
        raise ApiError("invalid_field", "key_prefix", "key_prefix must be a string")
    caller = context.api_key
    assert caller is not None  # the route needs a key, so dispatch has set one
    if caller.key_prefix is None:
        if requested is None:
            raise ApiError(
                "missing_field", "key_prefix", "an admin key must name the tenant in key_prefix"
            )
        return requested
    if requested is not None and requested != caller.key_prefix:
        raise ApiError(
            "forbidden", "key_prefix", "a tenant key can create links for its own tenant only"
        )
    return caller.key_prefix


async def create_tracking_url(context: Context) -> Reply:
    body = context.json()
    owner = _owner_for_create(context, body)
    destination = _destination(body)
    params = _params(body)
    name = body.get("name", "")
    if not isinstance(name, str) or len(name) > tracking_urls.MAX_NAME_LEN:
        raise ApiError(
            "invalid_field",
            "name",
            f"name must be a string of at most {tracking_urls.MAX_NAME_LEN} characters",
        )
    url = await context.call(
        tracking_urls.create_tracking_url,
        context.services.registry,
        owner,
        destination,
        name=name,
        params=params,
    )
    return 201, _json(url)


async def list_urls(context: Context) -> Reply:
    found = await context.call(
        tracking_urls.list_tracking_urls, context.services.registry, key_prefix=context.tenant
    )
    return 200, {"tracking_urls": [_json(url) for url in found]}


async def get_url(context: Context) -> Reply:
    return 200, _json(await _own(context))


async def update_url(context: Context) -> Reply:
    body = context.json()
    if not body:
        raise ApiError("missing_field", "destination", "send destination, status or both")
    status = body.get("status")
    if status is not None and status not in ("active", "disabled"):
        raise ApiError("invalid_field", "status", "status must be active or disabled")
    destination = _destination(body) if "destination" in body else None

    url = await _own(context)
    registry = context.services.registry
    if destination is not None:
        url = await context.call(tracking_urls.rotate_destination, registry, url.tu_id, destination)
    if status == "disabled":
        url = await context.call(tracking_urls.disable_tracking_url, registry, url.tu_id)
    elif status == "active":
        url = await context.call(tracking_urls.enable_tracking_url, registry, url.tu_id)
    return 200, _json(url)


_DESTINATION = {
    "type": "string",
    "format": "uri",
    "pattern": "^https?://",
    "maxLength": MAX_DESTINATION_LENGTH,
}

ROUTES = [
    Route(
        "POST",
        "/api/tracking-urls",
        create_tracking_url,
        "write",
        "Create a short link /t/{tu_id} that redirects to destination",
        "tracking-urls",
        body={
            "type": "object",
            "additionalProperties": False,
            "required": ["destination"],
            "properties": {
                "key_prefix": {
                    "type": "string",
                    "description": "Tenant of the link; admin keys only.",
                },
                "destination": _DESTINATION,
                "name": {"type": "string", "maxLength": tracking_urls.MAX_NAME_LEN},
                "params": {
                    "type": "object",
                    "maxProperties": MAX_PARAMS,
                    "propertyNames": {"minLength": 1, "maxLength": MAX_PARAM_KEY_LENGTH},
                    "additionalProperties": {"type": "string", "maxLength": MAX_PARAM_VALUE_LENGTH},
                },
            },
        },
        status=201,
        response=TRACKING_URL,
    ),
    Route(
        "GET",
        "/api/tracking-urls",
        list_urls,
        "read",
        "List the tenant's short links, newest first",
        "tracking-urls",
        tenant_only=True,
        response=list_of("tracking_urls", TRACKING_URL),
    ),
    Route(
        "GET",
        "/api/tracking-urls/{tu_id}",
        get_url,
        "read",
        "Get one short link",
        "tracking-urls",
        tenant_only=True,
        response=TRACKING_URL,
        errors=(404,),
    ),
    Route(
        "PATCH",
        "/api/tracking-urls/{tu_id}",
        update_url,
        "write",
        "Point a short link at a new destination, or disable or enable it",
        "tracking-urls",
        tenant_only=True,
        body={
            "type": "object",
            "additionalProperties": False,
            "minProperties": 1,
            "properties": {
                "destination": _DESTINATION,
                "status": {"type": "string", "enum": ["active", "disabled"]},
            },
        },
        response=TRACKING_URL,
        errors=(404,),
    ),
]

PATH_SCHEMAS = {"tu_id": {"type": "string", "maxLength": 128}}
