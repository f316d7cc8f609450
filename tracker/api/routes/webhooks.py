"""Webhook endpoints of the caller's tenant, their deliveries, dead letters and replays.

The signing secret is returned once, by the request that creates the endpoint.
"""

from __future__ import annotations

from typing import Any

from tracker.api.errors import ApiError
from tracker.api.params import QueryArgs
from tracker.api.routes.schemas import TIMESTAMP, list_of
from tracker.api.routing import Context, Param, Reply, Route
from tracker.registry import webhooks

__all__ = ["ROUTES"]

MAX_BEFORE = 10**15

ENDPOINT: dict[str, Any] = {
    "type": "object",
    "required": ["endpoint_id", "key_prefix", "url", "event_types", "param_filters", "status"],
    "properties": {
        "endpoint_id": {"type": "string"},
        "key_prefix": {"type": "string"},
        "url": {"type": "string"},
        "event_types": {"type": "array", "items": {"type": "string"}},
        "param_filters": {"type": "object", "additionalProperties": {"type": "string"}},
        "description": {"type": "string"},
        "status": {"type": "string", "enum": ["active", "disabled"]},
        "created_at": TIMESTAMP,
        "updated_at": TIMESTAMP,
    },
}
DELIVERY: dict[str, Any] = {
    "type": "object",
    "required": ["delivery_id", "endpoint_id", "event_id", "status", "attempts"],
    "properties": {
        "delivery_id": {"type": "string"},
        "endpoint_id": {"type": "string"},
        "key_prefix": {"type": "string"},
        "event_id": {"type": "string"},
        "status": {"type": "string", "enum": list(webhooks.DELIVERY_STATUSES)},
        "attempts": {"type": "integer"},
        "last_error": {"type": ["string", "null"]},
        "response_code": {"type": ["integer", "null"]},
        "next_attempt_at": {"type": ["integer", "null"]},
        "created_at": TIMESTAMP,
        "updated_at": TIMESTAMP,
    },
}
PAGE_PARAMS = (
    Param(
        "limit",
        {"type": "integer", "minimum": 1, "maximum": webhooks.MAX_LIST_LIMIT, "default": 100},
        "Maximum deliveries returned.",
    ),
    Param(
        "before",
        {"type": "integer", "minimum": 0, "maximum": MAX_BEFORE},
        "Only deliveries created before this Unix second (next page).",
    ),
)


def _page(args: QueryArgs) -> dict[str, int | None]:
    limit = args.integer("limit", 100, minimum=1, maximum=webhooks.MAX_LIST_LIMIT)
    before = args.integer("before", -1, minimum=0, maximum=MAX_BEFORE)
    return {"limit": limit, "before": None if before < 0 else before}


async def create_webhook(context: Context) -> Reply:
    body = context.json()
    description = body.get("description", "")
    if not isinstance(description, str):
        raise ApiError("invalid_field", "description", "description must be a string")
    created = await context.call(
        webhooks.create_endpoint,
        context.services.registry,
        key_prefix=context.tenant,
        url=body.get("url"),
        event_types=body.get("event_types", []),
        param_filters=body.get("param_filters", {}),
        description=description,
        policy=context.services.webhook_policy,
    )
    return 201, {"endpoint": created.endpoint.to_dict(), "secret": created.secret}


async def list_webhooks(context: Context) -> Reply:
    found = await context.call(webhooks.list_endpoints, context.services.registry, context.tenant)
    return 200, {"endpoints": [endpoint.to_dict() for endpoint in found]}


async def get_webhook(context: Context) -> Reply:
    endpoint = await context.call(
        webhooks.get_endpoint,
        context.services.registry,
        context.path["endpoint_id"],
        key_prefix=context.tenant,
    )
    return 200, endpoint.to_dict()


async def delete_webhook(context: Context) -> Reply:
    await context.call(
        webhooks.delete_endpoint,
        context.services.registry,
        context.path["endpoint_id"],
        key_prefix=context.tenant,
    )
    return 200, {"deleted": context.path["endpoint_id"]}


async def list_endpoint_deliveries(context: Context) -> Reply:
    endpoint_id = context.path["endpoint_id"]
    registry = context.services.registry
    status = context.args.one("status")
    if status is not None and status not in webhooks.DELIVERY_STATUSES:
        raise ApiError(
            "invalid_field",
            "status",
            f"status must be one of {', '.join(webhooks.DELIVERY_STATUSES)}",
        )
    page = _page(context.args)
    # 404 for an endpoint of another tenant, rather than an empty list.
    await context.call(webhooks.get_endpoint, registry, endpoint_id, key_prefix=context.tenant)
    found = await context.call(
        webhooks.list_deliveries,
        registry,
        key_prefix=context.tenant,
        endpoint_id=endpoint_id,
        status=status,
        **page,
    )
    return 200, {"deliveries": [delivery.to_dict() for delivery in found]}


async def list_dead_letters(context: Context) -> Reply:
    page = _page(context.args)
    endpoint_id = context.args.one("endpoint_id")
    found = await context.call(
        webhooks.list_dead_letters,
        context.services.registry,
        key_prefix=context.tenant,
        endpoint_id=endpoint_id,
        **page,
    )
    return 200, {"deliveries": [delivery.to_dict() for delivery in found]}


async def replay_delivery(context: Context) -> Reply:
    delivery = await context.call(
        webhooks.replay,
        context.services.registry,
        context.path["delivery_id"],
        key_prefix=context.tenant,
    )
    return 200, delivery.to_dict()


ROUTES = [
    Route(
        "POST",
        "/api/webhooks",
        create_webhook,
        "write",
        "Register a webhook endpoint; the response holds its signing secret, shown once",
        "webhooks",
        tenant_only=True,
        body={
            "type": "object",
            "additionalProperties": False,
            "required": ["url"],
            "properties": {
                "url": {
                    "type": "string",
                    "format": "uri",
                    "pattern": "^https?://",
                    "maxLength": 2048,
                },
                "event_types": {
                    "type": "array",
                    "items": {"type": "string", "pattern": "^[A-Za-z0-9_.:-]{1,64}$"},
                    "maxItems": webhooks.MAX_EVENT_TYPES,
                },
                "param_filters": {
                    "type": "object",
                    "maxProperties": webhooks.MAX_PARAM_FILTERS,
                    "propertyNames": {"minLength": 1, "maxLength": webhooks.MAX_PARAM_KEY_LENGTH},
                    "additionalProperties": {
                        "type": "string",
                        "maxLength": webhooks.MAX_PARAM_VALUE_LENGTH,
                    },
                },
                "description": {"type": "string", "maxLength": webhooks.MAX_DESCRIPTION_LENGTH},
            },
        },
        status=201,
        response={
            "type": "object",
            "required": ["endpoint", "secret"],
            "properties": {"endpoint": ENDPOINT, "secret": {"type": "string"}},
        },
    ),
    Route(
        "GET",
        "/api/webhooks",
        list_webhooks,
        "read",
        "List webhook endpoints",
        "webhooks",
        tenant_only=True,
        response=list_of("endpoints", ENDPOINT),
    ),
    Route(
        "GET",
        "/api/webhooks/{endpoint_id}",
        get_webhook,
        "read",
        "Get a webhook endpoint",
        "webhooks",
        tenant_only=True,
        response=ENDPOINT,
        errors=(404,),
    ),
    Route(
        "DELETE",
        "/api/webhooks/{endpoint_id}",
        delete_webhook,
        "write",
        "Delete a webhook endpoint and its delivery history",
        "webhooks",
        tenant_only=True,
        response={
            "type": "object",
            "required": ["deleted"],
            "properties": {"deleted": {"type": "string"}},
        },
        errors=(404,),
    ),
    Route(
        "GET",
        "/api/webhooks/{endpoint_id}/deliveries",
        list_endpoint_deliveries,
        "read",
        "List an endpoint's deliveries, newest first",
        "webhooks",
        tenant_only=True,
        query=(
            Param(
                "status",
                {"type": "string", "enum": list(webhooks.DELIVERY_STATUSES)},
                "Only deliveries in this state.",
            ),
            *PAGE_PARAMS,
        ),
        response=list_of("deliveries", DELIVERY),
        errors=(404,),
    ),
    Route(
        "GET",
        "/api/webhook-dead-letters",
        list_dead_letters,
        "read",
        "List deliveries that were given up on, newest first",
        "webhooks",
        tenant_only=True,
        query=(
            Param(
                "endpoint_id",
                {"type": "string", "maxLength": 64},
                "Only this endpoint's dead letters.",
            ),
            *PAGE_PARAMS,
        ),
        response=list_of("deliveries", DELIVERY),
    ),
    Route(
        "POST",
        "/api/webhook-deliveries/{delivery_id}/replay",
        replay_delivery,
        "write",
        "Queue a dead or delivered delivery again",
        "webhooks",
        tenant_only=True,
        response=DELIVERY,
        errors=(404, 409),
    ),
]

PATH_SCHEMAS = {
    "endpoint_id": {"type": "string", "maxLength": 64},
    "delivery_id": {"type": "string", "maxLength": 64},
}
