"""Click resolution for `/t`: verify a signed link or decrypt an encrypted one.

Which secrets apply depends on the link. A tenant-prefixed signature
(`<key_prefix>_<hex>`) or blob (`<key_prefix>.<blob>`) uses that tenant's
active secrets from the registry and works in both URL modes. An unprefixed
one uses the global secret of the configured mode only: `HMAC_SECRET` when
`URL_MODE=signed`, `ENCRYPTION_KEY(S)` when `URL_MODE=encrypted`. Byte formats
are in docs/formats.md.
"""

from __future__ import annotations

from dataclasses import dataclass

from tracker._core import (
    blob_header,
    decrypt_destination,
    split_signature,
    verify_click,
)
from tracker.errors import DecryptionError, SignatureError, SignatureExpired, UnknownKeyId
from tracker.ingest.cache import RegistryCache
from tracker.ingest.destinations import Destination, InvalidDestination, parse_destination_cached
from tracker.ingest.errors import IngestError
from tracker.ingest.requests import Query
from tracker.ingest.settings import IngestSettings

__all__ = ["RESERVED_CLICK_PARAMS", "Click", "require_tenant", "resolve_click"]

# Query parameters that steer the click itself and never become event params.
RESERVED_CLICK_PARAMS = frozenset({"url", "sig", "exp", "sp", "d"})


# Not frozen: a frozen dataclass sets each field through object.__setattr__, which costs
# about half a microsecond per click.
@dataclass(slots=True)
class Click:
    """A verified click: where to send the browser, for which tenant, with which params."""

    destination: Destination
    key_prefix: str
    params: list[tuple[str, str]]


def resolve_click(query: Query, settings: IngestSettings, cache: RegistryCache, now: int) -> Click:
    """Verify or decrypt the click in `query`; raise IngestError saying what is wrong."""
    has_url = "url" in query.values
    has_blob = "d" in query.values
    if has_url and has_blob:
        raise IngestError("ambiguous_click", "pass either url and sig, or d, not both", "d")
    if has_blob:
        return _resolve_encrypted(query, settings, cache, now)
    if has_url or "sig" in query.values:
        return _resolve_signed(query, settings, cache, now)
    raise IngestError("missing_param", "a click needs url and sig (signed) or d (encrypted)", "url")


def require_tenant(cache: RegistryCache, key_prefix: str, field: str = "key_prefix"):
    """Return the cached tenant; raise unknown_tenant or tenant_disabled."""
    tenant = cache.tenants.get(key_prefix)
    if tenant is None:
        raise IngestError("unknown_tenant", f"tenant {key_prefix[:50]!r} is not registered", field)
    if not tenant.active:
        raise IngestError("tenant_disabled", f"tenant {key_prefix[:50]!r} is disabled", field)
    return tenant


def _resolve_signed(
    query: Query, settings: IngestSettings, cache: RegistryCache, now: int
) -> Click:
    destination_text = query.required("url")
    sig = query.single("sig")
    if not sig:
        raise IngestError("invalid_signature", "sig is required for a signed click", "sig")
    # Most links carry neither exp nor sp, so the lookups come before the calls.
    values = query.values
    expires_at = _read_expiry(query.single("exp")) if "exp" in values else None
    covered = _covered_params(query) if "sp" in values else []
    destination = _check_destination(destination_text)

    try:
        key_prefix, _ = split_signature(sig)
    except SignatureError:
        raise IngestError(
            "invalid_signature",
            "sig is malformed: expected [<key_prefix>_]<64 lowercase hex>",
            "sig",
        ) from None

    if key_prefix is not None:
        secrets = require_tenant(cache, key_prefix, "sig").hmac_secrets
    else:
        if settings.url_mode != "signed" or settings.hmac_secret is None:
            raise IngestError(
                "invalid_signature", "unprefixed signatures are not accepted by this server", "sig"
            )
        secrets = (settings.hmac_secret,)
        key_prefix = query.required("key_prefix")
        require_tenant(cache, key_prefix)

    if not secrets:
        raise IngestError("invalid_signature", "the tenant has no active signing secret", "sig")
    try:
        verify_click(secrets, destination_text, sig, params=covered, expires_at=expires_at, now=now)
    except SignatureExpired:
        raise IngestError(
            "signature_expired", "the link expired (exp is in the past)", "exp"
        ) from None
    except SignatureError:
        raise IngestError(
            "invalid_signature", "the signature does not match the link", "sig"
        ) from None

    params = query.pairs(RESERVED_CLICK_PARAMS)
    params.append(("key_prefix", key_prefix))
    return Click(destination=destination, key_prefix=key_prefix, params=params)


def _resolve_encrypted(
    query: Query, settings: IngestSettings, cache: RegistryCache, now: int
) -> Click:
    blob = query.required("d")
    try:
        key_prefix, key_id = blob_header(blob)
    except DecryptionError:
        raise IngestError(
            "decryption_failed", "d is malformed: expected [<key_prefix>.]<base64url blob>", "d"
        ) from None

    if key_prefix is not None:
        keys = require_tenant(cache, key_prefix, "d").aes_keys
    else:
        if settings.url_mode != "encrypted" or not settings.encryption_keys:
            raise IngestError(
                "decryption_failed",
                "links without a tenant prefix are not accepted by this server",
                "d",
            )
        keys = settings.encryption_keys
    key = keys.get(key_id)
    if key is None:
        raise IngestError("unknown_key_id", f"encryption key id {key_id} is not active", "d")

    try:
        decrypted = decrypt_destination(key, blob, now=now)
    except SignatureExpired:
        raise IngestError("signature_expired", "the link expired", "d") from None
    except UnknownKeyId:
        raise IngestError(
            "unknown_key_id", f"encryption key id {key_id} is not active", "d"
        ) from None
    except DecryptionError:
        raise IngestError(
            "decryption_failed", "d could not be decrypted or was altered", "d"
        ) from None
    destination = _check_destination(decrypted.destination)

    if key_prefix is None:
        # A global blob names its tenant in its sealed params, or else in a visible one.
        sealed_prefix = dict(decrypted.params).get("key_prefix")
        key_prefix = sealed_prefix or query.required("key_prefix")
        require_tenant(cache, key_prefix)

    # Params sealed in the blob win over visible ones of the same name.
    params = query.pairs(RESERVED_CLICK_PARAMS)
    params.extend(decrypted.params)
    params.append(("key_prefix", key_prefix))
    return Click(destination=destination, key_prefix=key_prefix, params=params)


def _check_destination(text: str) -> Destination:
    try:
        return parse_destination_cached(text)
    except InvalidDestination as error:
        raise IngestError("invalid_destination", str(error), "url") from None


def _read_expiry(text: str | None) -> int | None:
    if text is None:
        return None
    # isascii() first: str.isdigit() also accepts digits such as "²" that int() rejects.
    # The extension takes expiries as signed 64-bit integers, hence the bound.
    if not (text.isascii() and text.isdigit()) or len(text) > 19 or int(text) >= 2**63:
        raise IngestError(
            "invalid_param",
            "exp must be Unix seconds as a non-negative integer below 2^63",
            "exp",
        )
    return int(text)


def _covered_params(query: Query) -> list[tuple[str, str]]:
    names_text = query.single("sp")
    if not names_text:
        return []
    covered = []
    for name in names_text.split(","):
        if name in RESERVED_CLICK_PARAMS:
            raise IngestError(
                "invalid_param", f"sp cannot cover the reserved parameter {name!r}", "sp"
            )
        values = query.values.get(name)
        if values is None:
            raise IngestError(
                "invalid_signature", f"covered parameter {name[:50]!r} is missing", name[:50]
            )
        if len(values) > 1:
            raise IngestError(
                "duplicate_param", f"covered parameter {name[:50]!r} must appear once", name[:50]
            )
        covered.append((name, values[0]))
    return covered
