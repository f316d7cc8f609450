"""A tenant's own API keys: create, list and revoke (admin keys may revoke any key)."""

from __future__ import annotations

from tracker.api.errors import ApiError
from tracker.api.routes.schemas import KEY, key_json, list_of
from tracker.api.routes.tenants import KEY_BODY, NEW_KEY
from tracker.api.routing import Context, Reply, Route
from tracker.registry import api_keys

__all__ = ["ROUTES"]

KEY_ID_SCHEMA = {"type": "string", "pattern": "^[0-9a-f]{12}$"}


async def list_keys(context: Context) -> Reply:
    found = await context.call(api_keys.list_api_keys, context.services.registry, context.tenant)
    return 200, {"keys": [key_json(key) for key in found]}


async def create_key(context: Context) -> Reply:
    body = context.json()
    scope = body.get("scope", "read")
    name = body.get("name", "")
    if scope not in ("read", "write"):
        raise ApiError(
            "invalid_field", "scope", "scope must be read or write; admin keys come from an admin"
        )
    if not isinstance(name, str) or len(name) > api_keys.MAX_NAME_LENGTH:
        raise ApiError(
            "invalid_field",
            "name",
            f"name must be a string of at most {api_keys.MAX_NAME_LENGTH} characters",
        )
    created = await context.call(
        api_keys.create_api_key,
        context.services.registry,
        key_prefix=context.tenant,
        scope=scope,
        name=name,
    )
    return 201, {"key": key_json(created.api_key), "api_key": created.raw_key}


async def revoke_key(context: Context) -> Reply:
    caller = context.api_key
    assert caller is not None  # the route needs a key, so dispatch has set one
    # An admin key revokes any key; a tenant key only keys of its own tenant.
    owner = None if caller.scope == "admin" else context.tenant
    revoked = await context.call(
        api_keys.revoke_api_key, context.services.registry, context.path["key_id"], key_prefix=owner
    )
    return 200, key_json(revoked)


ROUTES = [
    Route(
        "GET",
        "/api/keys",
        list_keys,
        "read",
        "List the API keys of the caller's tenant",
        "keys",
        tenant_only=True,
        response=list_of("keys", KEY),
    ),
    Route(
        "POST",
        "/api/keys",
        create_key,
        "write",
        "Create a read or write API key for the caller's tenant",
        "keys",
        tenant_only=True,
        body=KEY_BODY,
        status=201,
        response=NEW_KEY,
    ),
    Route(
        "DELETE",
        "/api/keys/{key_id}",
        revoke_key,
        "write",
        "Revoke an API key; revoking twice is a no-op",
        "keys",
        response=KEY,
        errors=(404,),
    ),
]

PATH_SCHEMAS = {"key_id": KEY_ID_SCHEMA}
