"""JSON schemas shared by several routes and the functions that serialise registry records."""

from __future__ import annotations

from typing import Any

from tracker.registry.api_keys import ApiKey
from tracker.registry.tenants import Tenant

__all__ = ["KEY", "TENANT", "key_json", "list_of", "tenant_json"]

TIMESTAMP = {"type": "integer", "description": "Unix seconds"}
NULLABLE_TIMESTAMP = {"type": ["integer", "null"], "description": "Unix seconds"}

TENANT: dict[str, Any] = {
    "type": "object",
    "required": ["key_prefix", "name", "plan", "status", "created_at", "updated_at"],
    "properties": {
        "key_prefix": {"type": "string"},
        "name": {"type": "string"},
        "plan": {"type": "string", "enum": ["free", "pro"]},
        "status": {"type": "string", "enum": ["active", "disabled"]},
        "hmac_key_ids": {"type": "array", "items": {"type": "integer"}},
        "aes_key_ids": {"type": "array", "items": {"type": "integer"}},
        "created_at": TIMESTAMP,
        "updated_at": TIMESTAMP,
    },
}

KEY: dict[str, Any] = {
    "type": "object",
    "required": ["key_id", "key_prefix", "scope", "name", "created_at", "revoked_at"],
    "properties": {
        "key_id": {"type": "string"},
        "key_prefix": {"type": ["string", "null"]},
        "scope": {"type": "string", "enum": ["read", "write", "admin"]},
        "name": {"type": "string"},
        "created_at": TIMESTAMP,
        "revoked_at": NULLABLE_TIMESTAMP,
    },
}


def list_of(name: str, item: dict[str, Any]) -> dict[str, Any]:
    """Return the schema of `{name: [item, ...]}`."""
    return {
        "type": "object",
        "required": [name],
        "properties": {name: {"type": "array", "items": item}},
    }


def tenant_json(tenant: Tenant) -> dict[str, Any]:
    return {
        "key_prefix": tenant.key_prefix,
        "name": tenant.name,
        "plan": tenant.plan,
        "status": tenant.status,
        "hmac_key_ids": list(tenant.hmac_key_ids),
        "aes_key_ids": list(tenant.aes_key_ids),
        "created_at": tenant.created_at,
        "updated_at": tenant.updated_at,
    }


def key_json(api_key: ApiKey) -> dict[str, Any]:
    return {
        "key_id": api_key.key_id,
        "key_prefix": api_key.key_prefix,
        "scope": api_key.scope,
        "name": api_key.name,
        "created_at": api_key.created_at,
        "revoked_at": api_key.revoked_at,
    }
