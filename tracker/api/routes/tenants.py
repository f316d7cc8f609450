"""Tenant management for admin keys: create, list, get, change plan or status, rotate secrets and keys.

Secrets and keys are returned only by the request that creates them. HMAC
secrets and AES keys are 32 random bytes, sent as 64 hex digits, so clients
decode them with `bytes.fromhex` before signing or encrypting.
"""

from __future__ import annotations

import re
from typing import Any

from tracker.api.errors import ApiError, translate
from tracker.api.routes.schemas import KEY, TENANT, key_json, list_of, tenant_json
from tracker.api.routing import Context, Reply, Route
from tracker.errors import RegistryError
from tracker.registry import api_keys, tenants

__all__ = ["ROUTES"]

MAX_TENANT_NAME_LENGTH = 200
KEY_PREFIX_SCHEMA = {"type": "string", "pattern": "^[a-z0-9]{1,32}$"}
HEX_SECRET = {"type": "string", "pattern": "^[0-9a-f]{64}$"}

NEW_KEY: dict[str, Any] = {
    "type": "object",
    "required": ["key", "api_key"],
    "properties": {
        "key": KEY,
        "api_key": {"type": "string", "description": "The raw key, shown only in this response."},
    },
}


def _tenant_prefix(context: Context) -> str:
    return context.path["key_prefix"]


async def create_tenant(context: Context) -> Reply:
    body = context.json()
    key_prefix = body.get("key_prefix")
    name = body.get("name", "")
    plan = body.get("plan", "free")
    if key_prefix is not None and not isinstance(key_prefix, str):
        raise ApiError(
            "invalid_field", "key_prefix", "key_prefix must be a string of 1 to 32 [a-z0-9]"
        )
    if not isinstance(name, str) or len(name) > MAX_TENANT_NAME_LENGTH:
        raise ApiError(
            "invalid_field",
            "name",
            f"name must be a string of at most {MAX_TENANT_NAME_LENGTH} characters",
        )
    if plan not in tenants.PLANS:
        raise ApiError("invalid_field", "plan", f"plan must be one of {', '.join(tenants.PLANS)}")

    try:
        created = await context.call(
            tenants.create_tenant,
            context.services.registry,
            key_prefix=key_prefix,
            name=name,
            plan=plan,
        )
    except RegistryError as error:
        raise translate(error, field="key_prefix") from error
    first_key = await context.call(
        api_keys.create_api_key,
        context.services.registry,
        key_prefix=created.key_prefix,
        scope="write",
        name="first key",
    )
    tenant = await context.call(tenants.get_tenant, context.services.registry, created.key_prefix)
    return 201, {
        "tenant": tenant_json(tenant),
        "hmac_secret_hex": created.hmac_secret.hex(),
        "aes_key_hex": created.aes_key.hex(),
        "aes_key_id": created.aes_key_id,
        "key": key_json(first_key.api_key),
        "api_key": first_key.raw_key,
    }


async def list_tenants(context: Context) -> Reply:
    found = await context.call(tenants.list_tenants, context.services.registry)
    return 200, {"tenants": [tenant_json(tenant) for tenant in found]}


async def get_tenant(context: Context) -> Reply:
    tenant = await context.call(
        tenants.get_tenant, context.services.registry, _tenant_prefix(context)
    )
    return 200, tenant_json(tenant)


async def update_tenant(context: Context) -> Reply:
    body = context.json()
    registry = context.services.registry
    key_prefix = _tenant_prefix(context)
    if not body:
        raise ApiError("missing_field", "plan", "send plan, status or both")
    plan = body.get("plan")
    status = body.get("status")
    if plan is not None and plan not in tenants.PLANS:
        raise ApiError("invalid_field", "plan", f"plan must be one of {', '.join(tenants.PLANS)}")
    if status is not None and status not in ("active", "disabled"):
        raise ApiError("invalid_field", "status", "status must be active or disabled")

    # Check existence first so an unknown tenant is a 404 whatever the body holds.
    await context.call(tenants.get_tenant, registry, key_prefix)
    if plan is not None:
        await context.call(tenants.set_plan, registry, key_prefix, plan)
    if status == "disabled":
        await context.call(tenants.disable_tenant, registry, key_prefix)
    elif status == "active":
        await context.call(tenants.enable_tenant, registry, key_prefix)
    return 200, tenant_json(await context.call(tenants.get_tenant, registry, key_prefix))


async def rotate_secret(context: Context) -> Reply:
    body = context.json()
    kind = body.get("kind")
    if kind not in ("hmac", "aes"):
        raise ApiError("invalid_field", "kind", "kind must be hmac or aes")
    rotate = tenants.rotate_hmac_secret if kind == "hmac" else tenants.rotate_aes_key
    rotated = await context.call(rotate, context.services.registry, _tenant_prefix(context))
    return 201, {"kind": rotated.kind, "key_id": rotated.key_id, "secret_hex": rotated.secret.hex()}


async def retire_secret(context: Context) -> Reply:
    kind = context.path["kind"]
    raw_id = context.path["secret_id"]
    if kind not in ("hmac", "aes"):
        raise ApiError("invalid_field", "kind", "kind must be hmac or aes")
    if not re.fullmatch(r"[0-9]{1,3}", raw_id) or int(raw_id) > tenants.MAX_KEY_ID:
        raise ApiError(
            "invalid_field",
            "secret_id",
            f"secret_id must be an integer from 0 to {tenants.MAX_KEY_ID}",
        )
    registry = context.services.registry
    await context.call(tenants.retire_secret, registry, _tenant_prefix(context), kind, int(raw_id))
    return 200, tenant_json(
        await context.call(tenants.get_tenant, registry, _tenant_prefix(context))
    )


async def create_tenant_key(context: Context) -> Reply:
    body = context.json()
    scope = body.get("scope", "read")
    name = body.get("name", "")
    if scope not in ("read", "write"):
        raise ApiError("invalid_field", "scope", "scope must be read or write")
    if not isinstance(name, str) or len(name) > api_keys.MAX_NAME_LENGTH:
        raise ApiError(
            "invalid_field",
            "name",
            f"name must be a string of at most {api_keys.MAX_NAME_LENGTH} characters",
        )
    created = await context.call(
        api_keys.create_api_key,
        context.services.registry,
        key_prefix=_tenant_prefix(context),
        scope=scope,
        name=name,
    )
    return 201, {"key": key_json(created.api_key), "api_key": created.raw_key}


async def list_tenant_keys(context: Context) -> Reply:
    registry = context.services.registry
    key_prefix = _tenant_prefix(context)
    await context.call(tenants.get_tenant, registry, key_prefix)
    found = await context.call(api_keys.list_api_keys, registry, key_prefix)
    return 200, {"keys": [key_json(key) for key in found]}


_PATH = {"key_prefix": KEY_PREFIX_SCHEMA}
KEY_BODY = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "scope": {"type": "string", "enum": ["read", "write"], "default": "read"},
        "name": {"type": "string", "maxLength": api_keys.MAX_NAME_LENGTH},
    },
}

ROUTES = [
    Route(
        "POST",
        "/api/tenants",
        create_tenant,
        "admin",
        "Create a tenant with its first HMAC secret, AES key and write API key",
        "tenants",
        body={
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "key_prefix": KEY_PREFIX_SCHEMA,
                "name": {"type": "string", "maxLength": MAX_TENANT_NAME_LENGTH},
                "plan": {"type": "string", "enum": list(tenants.PLANS)},
            },
        },
        status=201,
        response={
            "type": "object",
            "required": [
                "tenant",
                "hmac_secret_hex",
                "aes_key_hex",
                "aes_key_id",
                "key",
                "api_key",
            ],
            "properties": {
                "tenant": TENANT,
                "hmac_secret_hex": HEX_SECRET,
                "aes_key_hex": HEX_SECRET,
                "aes_key_id": {"type": "integer"},
                "key": KEY,
                "api_key": {"type": "string"},
            },
        },
        errors=(409,),
    ),
    Route(
        "GET",
        "/api/tenants",
        list_tenants,
        "admin",
        "List tenants",
        "tenants",
        response=list_of("tenants", TENANT),
    ),
    Route(
        "GET",
        "/api/tenants/{key_prefix}",
        get_tenant,
        "admin",
        "Get one tenant",
        "tenants",
        response=TENANT,
        errors=(404,),
    ),
    Route(
        "PATCH",
        "/api/tenants/{key_prefix}",
        update_tenant,
        "admin",
        "Change a tenant's plan or enable or disable it",
        "tenants",
        body={
            "type": "object",
            "additionalProperties": False,
            "minProperties": 1,
            "properties": {
                "plan": {"type": "string", "enum": list(tenants.PLANS)},
                "status": {"type": "string", "enum": ["active", "disabled"]},
            },
        },
        response=TENANT,
        errors=(404,),
    ),
    Route(
        "POST",
        "/api/tenants/{key_prefix}/secrets",
        rotate_secret,
        "admin",
        "Add a new HMAC secret or AES key; older ones stay valid until retired",
        "tenants",
        body={
            "type": "object",
            "additionalProperties": False,
            "required": ["kind"],
            "properties": {"kind": {"type": "string", "enum": ["hmac", "aes"]}},
        },
        status=201,
        response={
            "type": "object",
            "required": ["kind", "key_id", "secret_hex"],
            "properties": {
                "kind": {"type": "string", "enum": ["hmac", "aes"]},
                "key_id": {"type": "integer"},
                "secret_hex": HEX_SECRET,
            },
        },
        errors=(404, 409),
    ),
    Route(
        "DELETE",
        "/api/tenants/{key_prefix}/secrets/{kind}/{secret_id}",
        retire_secret,
        "admin",
        "Retire an HMAC secret or AES key so links made with it stop working",
        "tenants",
        response=TENANT,
        errors=(404, 409),
    ),
    Route(
        "POST",
        "/api/tenants/{key_prefix}/keys",
        create_tenant_key,
        "admin",
        "Create an API key for a tenant",
        "tenants",
        body=KEY_BODY,
        status=201,
        response=NEW_KEY,
        errors=(404,),
    ),
    Route(
        "GET",
        "/api/tenants/{key_prefix}/keys",
        list_tenant_keys,
        "admin",
        "List a tenant's API keys",
        "tenants",
        response=list_of("keys", KEY),
        errors=(404,),
    ),
]

PATH_SCHEMAS = {
    "key_prefix": KEY_PREFIX_SCHEMA,
    "kind": {"type": "string", "enum": ["hmac", "aes"]},
    "secret_id": {"type": "integer", "minimum": 0, "maximum": tenants.MAX_KEY_ID},
}
