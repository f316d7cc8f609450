"""Build signed and encrypted click URLs for the caller's tenant with its secrets, server-side.

The secrets never leave the server: the response holds only the finished URLs,
built on INGEST_PUBLIC_URL (default `http://<API_HOST>:<PORT>`).
"""

from __future__ import annotations

import functools
import time
from typing import Any
from urllib.parse import quote

from tracker._core import encrypt_destination, sign_click
from tracker.api.dashboard.settings import DashboardSettings
from tracker.api.errors import ApiError
from tracker.api.routes.tracking_urls import (
    MAX_DESTINATION_LENGTH,
    MAX_PARAM_KEY_LENGTH,
    MAX_PARAM_VALUE_LENGTH,
    MAX_PARAMS,
    _destination,
    _params,
)
from tracker.api.routing import Context, Reply, Route
from tracker.errors import NotFound
from tracker.registry.tenants import TenantSecrets, load_tenant_secrets
from tracker.settings import load_env

__all__ = ["ROUTES"]

MAX_EXPIRES_IN_SECONDS = 10 * 365 * 24 * 3600
# Query names that ingest reads from a click URL itself; an extra param must not repeat them.
RESERVED_PARAMS = ("d", "exp", "sig", "sp", "url")


@functools.cache
def _ingest_url() -> str:
    return DashboardSettings.from_env(load_env()).ingest_public_url


def _query(pairs: list[tuple[str, str]]) -> str:
    return "&".join(f"{quote(name, safe='')}={quote(value, safe='')}" for name, value in pairs)


def _secrets_of(registry: Any, key_prefix: str) -> TenantSecrets:
    for tenant in load_tenant_secrets(registry):
        if tenant.key_prefix == key_prefix:
            return tenant
    raise NotFound(f"tenant {key_prefix[:50]!r} not found")


def _expires_at(body: dict[str, Any]) -> int | None:
    expires_in = body.get("expires_in")
    if expires_in is None:
        return None
    # JSON Schema counts 60.0 as an integer, so a whole float is accepted too.
    if isinstance(expires_in, float) and expires_in.is_integer():
        expires_in = int(expires_in)
    if (
        not isinstance(expires_in, int)
        or isinstance(expires_in, bool)
        or not 1 <= expires_in <= MAX_EXPIRES_IN_SECONDS
    ):
        raise ApiError(
            "invalid_field",
            "expires_in",
            f"expires_in must be a whole number of seconds from 1 to {MAX_EXPIRES_IN_SECONDS}",
        )
    return int(time.time()) + expires_in


async def sign_click_urls(context: Context) -> Reply:
    body = context.json()
    destination = _destination(body)
    params = sorted(_params(body).items())
    reserved = [name for name, _ in params if name in RESERVED_PARAMS]
    if reserved:
        raise ApiError(
            "invalid_field",
            "params",
            f"params must not contain {reserved[0]!r}: the click URL itself uses "
            f"{', '.join(RESERVED_PARAMS)}",
        )
    expires_at = _expires_at(body)
    tenant = context.tenant
    secrets = await context.call(_secrets_of, context.services.registry, tenant)
    if not secrets.hmac_secrets or not secrets.aes_keys:
        raise ApiError(
            "conflict",
            "",
            f"tenant {tenant!r} has no active HMAC secret or AES key, so rotate one first",
        )
    base = f"{_ingest_url()}/t?"

    # hmac_secrets is newest first. The signature covers the destination, tenant and expiry.
    sig = sign_click(secrets.hmac_secrets[0], destination, key_prefix=tenant, expires_at=expires_at)
    signed = [("url", destination), ("sig", sig)]
    if expires_at is not None:
        signed.append(("exp", str(expires_at)))

    key_id = max(secrets.aes_keys)
    blob = encrypt_destination(
        secrets.aes_keys[key_id], key_id, destination, key_prefix=tenant, expires_at=expires_at
    )
    return 200, {
        "signed_url": base + _query([*signed, *params]),
        "encrypted_url": base + _query([("d", blob), *params]),
        "aes_key_id": key_id,
        "expires_at": expires_at,
    }


ROUTES = [
    Route(
        "POST",
        "/api/tracking-urls/sign",
        sign_click_urls,
        "write",
        "Build a signed and an encrypted click URL for a destination with the tenant's newest secrets",
        "tracking-urls",
        tenant_only=True,
        body={
            "type": "object",
            "additionalProperties": False,
            "required": ["destination"],
            "properties": {
                "destination": {
                    "type": "string",
                    "format": "uri",
                    "pattern": "^https?://",
                    "maxLength": MAX_DESTINATION_LENGTH,
                },
                "params": {
                    "type": "object",
                    "description": "Unsigned params appended to both URLs, such as sub1.",
                    "maxProperties": MAX_PARAMS,
                    "propertyNames": {
                        "minLength": 1,
                        "maxLength": MAX_PARAM_KEY_LENGTH,
                        "not": {"enum": list(RESERVED_PARAMS)},
                    },
                    "additionalProperties": {"type": "string", "maxLength": MAX_PARAM_VALUE_LENGTH},
                },
                "expires_in": {
                    "type": "integer",
                    "minimum": 1,
                    "maximum": MAX_EXPIRES_IN_SECONDS,
                    "description": "Seconds until both URLs stop working.",
                },
            },
        },
        response={
            "type": "object",
            "required": ["signed_url", "encrypted_url", "aes_key_id", "expires_at"],
            "properties": {
                "signed_url": {"type": "string"},
                "encrypted_url": {"type": "string"},
                "aes_key_id": {"type": "integer"},
                "expires_at": {"type": ["integer", "null"]},
            },
        },
        errors=(409,),
    ),
]
