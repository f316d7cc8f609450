"""URL building tools: signed and encrypted click URLs, postback and impression URLs, short links.

Signed and encrypted links need the tenant's secrets. The server builds them
with `tracker._core` from TRACKER_HMAC_SECRET and TRACKER_AES_KEY when the call
uses the key the server was started with. Otherwise it calls the API's
POST /api/tracking-urls/sign, which keeps the secrets server-side but covers no
params and hides none. Secrets are never tool arguments, so they never pass
through an assistant's context.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Annotated, Any
from urllib.parse import quote

from mcp.server.mcpserver import Context, MCPServer
from mcp_types import CallToolResult, ToolAnnotations
from pydantic import Field

from tracker import _core
from tracker.mcp.client import failure, tool_result
from tracker.mcp.fields import TuId
from tracker.mcp.platform import Platform

__all__ = ["register"]

PURE = ToolAnnotations(read_only_hint=True, idempotent_hint=False, open_world_hint=False)
SIGNED_RESERVED = frozenset({"url", "sig", "exp", "sp"})
ENCRYPTED_RESERVED = frozenset({"d"})
PIXEL_RESERVED = frozenset({"key_prefix", "sig", "exp", "sp"})
MAX_EXPIRES_IN_SECONDS = 10 * 365 * 24 * 3600

Destination = Annotated[
    str,
    Field(
        description="Absolute http(s) URL to redirect to.",
        pattern=r"^https?://",
        max_length=2048,
        examples=["https://shop.example.com/offer?id=7"],
    ),
]
Params = Annotated[
    dict[str, str] | None,
    Field(
        description="Visible query params recorded with the event; anyone holding the URL can change them.",
        examples=[{"sub1": "newsletter", "offer_id": "123"}],
    ),
]
ExpiresIn = Annotated[
    int | None,
    Field(
        description="Seconds from now until the URL stops working (default never).",
        ge=1,
        le=MAX_EXPIRES_IN_SECONDS,
        examples=[86400],
    ),
]
SignedParams = Annotated[
    list[str] | None,
    Field(
        description="Names of entries in `params` that the signature covers, so they cannot be changed.",
        max_length=32,
        examples=[["offer_id"]],
    ),
]


def _query(pairs: Iterable[tuple[str, str]]) -> str:
    return "&".join(f"{quote(name, safe='')}={quote(value, safe='')}" for name, value in pairs)


def _pairs(
    params: dict[str, str] | None, reserved: frozenset[str], field: str
) -> list[tuple[str, str]]:
    pairs = sorted((params or {}).items())
    for name, _ in pairs:
        if not name:
            raise failure("invalid_param", "param names must not be empty", field=field)
        if name in reserved:
            raise failure(
                "reserved_param",
                f"param name {name[:50]!r} is used by the URL format; choose another name",
                field=field,
            )
    return pairs


def _covered(names: list[str] | None, pairs: list[tuple[str, str]]) -> list[tuple[str, str]]:
    present = dict(pairs)
    for name in names or ():
        if name not in present:
            raise failure(
                "invalid_param",
                f"signed param {name[:50]!r} is not in params; add it or drop it from signed_params",
                field="signed_params",
            )
        if "," in name:
            raise failure(
                "invalid_param",
                f"signed param {name[:50]!r} contains a comma",
                field="signed_params",
            )
    return [(name, present[name]) for name in sorted(set(names or ()))]


def _expires_at(expires_in: int | None) -> int | None:
    return None if expires_in is None else int(time.time()) + expires_in


def _sign(
    secret: bytes,
    path: str,
    key_prefix: str,
    covered: list[tuple[str, str]],
    expires_at: int | None,
) -> list[tuple[str, str]]:
    """Return the sig, exp and sp pairs of a signature over `path` or a destination."""
    try:
        sig = _core.sign_click(
            secret, path, key_prefix=key_prefix, params=covered, expires_at=expires_at
        )
    except ValueError as error:
        raise failure("invalid_argument", str(error)) from None
    pairs = [("sig", sig)]
    if expires_at is not None:
        pairs.append(("exp", str(expires_at)))
    if covered:
        pairs.append(("sp", ",".join(name for name, _ in covered)))
    return pairs


def register(server: MCPServer, platform: Platform) -> None:
    """Add the URL building tools to `server`."""
    settings = platform.settings

    def local_secrets(ctx: Context) -> bool:
        return platform.uses_configured_key(ctx)

    async def server_built(
        ctx: Context, destination: str, pairs: list[tuple[str, str]], expires_in: int | None
    ) -> dict[str, Any]:
        body: dict[str, Any] = {"destination": destination}
        if pairs:
            body["params"] = dict(pairs)
        if expires_in is not None:
            body["expires_in"] = expires_in
        return await platform.call(ctx, "POST", "/api/tracking-urls/sign", body=body)

    @server.tool(
        name="build_signed_click_url",
        description=(
            "Build a signed click URL /t?url=...&sig=... (HMAC-SHA256 with the tenant's secret) "
            "that records a click and redirects to `destination`. The destination stays visible. "
            "Changes nothing on the platform."
        ),
        annotations=PURE,
    )
    async def build_signed_click_url(
        ctx: Context,
        destination: Destination,
        params: Params = None,
        signed_params: SignedParams = None,
        expires_in: ExpiresIn = None,
    ) -> CallToolResult:
        pairs = _pairs(params, SIGNED_RESERVED, "params")
        key_prefix = await platform.tenant(ctx)
        if settings.hmac_secret is None or not local_secrets(ctx):
            if signed_params:
                raise failure(
                    "secret_not_configured",
                    "signed_params needs TRACKER_HMAC_SECRET on the MCP server; the API's signing endpoint covers no params",
                    field="signed_params",
                )
            built = await server_built(ctx, destination, pairs, expires_in)
            return tool_result(
                {
                    "url": built["signed_url"],
                    "key_prefix": key_prefix,
                    "expires_at": built.get("expires_at"),
                },
                source="api",
            )

        covered = _covered(signed_params, pairs)
        expires_at = _expires_at(expires_in)
        sig_pairs = _sign(settings.hmac_secret, destination, key_prefix, covered, expires_at)
        url = f"{settings.ingest_url}/t?" + _query([("url", destination), *sig_pairs, *pairs])
        return tool_result(
            {"url": url, "key_prefix": key_prefix, "expires_at": expires_at}, source="local"
        )

    @server.tool(
        name="build_encrypted_click_url",
        description=(
            "Build an encrypted click URL /t?d=... (AES-256-GCM with the tenant's key) that hides "
            "the destination and `hidden_params` from whoever sees the link. Changes nothing on the platform."
        ),
        annotations=PURE,
    )
    async def build_encrypted_click_url(
        ctx: Context,
        destination: Destination,
        params: Params = None,
        hidden_params: Annotated[
            dict[str, str] | None,
            Field(
                description="Params sealed inside the blob: recorded with the click but unreadable and unchangeable.",
                examples=[{"offer_id": "123"}],
            ),
        ] = None,
        expires_in: ExpiresIn = None,
    ) -> CallToolResult:
        pairs = _pairs(params, ENCRYPTED_RESERVED, "params")
        hidden = _pairs(hidden_params, frozenset(), "hidden_params")
        key_prefix = await platform.tenant(ctx)
        if settings.aes_key is None or not local_secrets(ctx):
            if hidden:
                raise failure(
                    "secret_not_configured",
                    "hidden_params needs TRACKER_AES_KEY on the MCP server; the API's signing endpoint hides no params",
                    field="hidden_params",
                )
            built = await server_built(ctx, destination, pairs, expires_in)
            return tool_result(
                {
                    "url": built["encrypted_url"],
                    "key_prefix": key_prefix,
                    "aes_key_id": built.get("aes_key_id"),
                    "expires_at": built.get("expires_at"),
                },
                source="api",
            )

        expires_at = _expires_at(expires_in)
        try:
            blob = _core.encrypt_destination(
                settings.aes_key,
                settings.aes_key_id,
                destination,
                key_prefix=key_prefix,
                params=hidden,
                expires_at=expires_at,
            )
        except ValueError as error:
            raise failure("invalid_argument", str(error)) from None
        url = f"{settings.ingest_url}/t?" + _query([("d", blob), *pairs])
        return tool_result(
            {
                "url": url,
                "key_prefix": key_prefix,
                "aes_key_id": settings.aes_key_id,
                "expires_at": expires_at,
            },
            source="local",
        )

    async def pixel_url(
        ctx: Context,
        path: str,
        params: dict[str, str] | None,
        sign: bool,
        signed_params: list[str] | None,
        expires_in: int | None,
    ) -> CallToolResult:
        pairs = _pairs(params, PIXEL_RESERVED, "params")
        key_prefix = await platform.tenant(ctx)
        query = [("key_prefix", key_prefix)]
        if sign:
            if settings.hmac_secret is None or not local_secrets(ctx):
                raise failure(
                    "secret_not_configured",
                    "signing needs TRACKER_HMAC_SECRET on the MCP server and the key it was started with",
                    field="sign",
                )
            covered = _covered(signed_params, pairs)
            query.extend(
                _sign(settings.hmac_secret, path, key_prefix, covered, _expires_at(expires_in))
            )
        elif signed_params or expires_in is not None:
            raise failure(
                "invalid_argument", "signed_params and expires_in need sign: true", field="sign"
            )
        url = f"{settings.ingest_url}{path}?" + _query([*query, *pairs])
        return tool_result({"url": url, "key_prefix": key_prefix, "signed": sign}, source="local")

    @server.tool(
        name="build_postback_url",
        description=(
            "Build a postback URL /p?key_prefix=... that a server calls to record a conversion. "
            "Put the click's ad_click_id in a param such as click_id so match_events can pair them. "
            "Set sign: true to protect the URL with the tenant's secret. Changes nothing on the platform."
        ),
        annotations=PURE,
    )
    async def build_postback_url(
        ctx: Context,
        params: Annotated[
            dict[str, str] | None,
            Field(
                description="Params recorded with the postback; event_type names the event (default postback).",
                examples=[{"event_type": "purchase", "click_id": "{click_id}", "amount": "19.90"}],
            ),
        ] = None,
        sign: Annotated[
            bool,
            Field(
                description="Add a signature over /p, so only holders of the tenant's secret can mint such URLs."
            ),
        ] = False,
        signed_params: SignedParams = None,
        expires_in: ExpiresIn = None,
    ) -> CallToolResult:
        return await pixel_url(ctx, "/p", params, sign, signed_params, expires_in)

    @server.tool(
        name="build_impression_url",
        description=(
            "Build an impression pixel URL /i?key_prefix=... that returns a 1x1 GIF and records an "
            "impression. Set sign: true to protect it with the tenant's secret. Changes nothing on the platform."
        ),
        annotations=PURE,
    )
    async def build_impression_url(
        ctx: Context,
        params: Params = None,
        sign: Annotated[bool, Field(description="Add a signature over /i.")] = False,
        signed_params: SignedParams = None,
        expires_in: ExpiresIn = None,
    ) -> CallToolResult:
        return await pixel_url(ctx, "/i", params, sign, signed_params, expires_in)

    @server.tool(
        name="build_short_url",
        description="Build the public URL of a tracking URL, /t/<tu_id>, with extra query params such as sub-ids. Changes nothing on the platform.",
        annotations=PURE,
    )
    async def build_short_url(ctx: Context, tu_id: TuId, params: Params = None) -> CallToolResult:
        await platform.call(ctx, "GET", f"/api/tracking-urls/{tu_id}")
        pairs = _pairs(params, frozenset(), "params")
        url = f"{settings.ingest_url}/t/{tu_id}"
        if pairs:
            url += "?" + _query(pairs)
        return tool_result({"url": url, "tu_id": tu_id}, source="api")
