"""API keys: creation, listing, revocation and constant-time verification.

A raw key reads `trk_<key_id>_<secret>`. `key_id` is 12 lowercase hex digits and
public (it appears in lists and logs). The secret is 32 random bytes in
unpadded base64url, so it may itself contain `_` and `-`. The registry stores
only SHA-256 of the whole raw key, which is returned once, by `create_api_key`.

Scopes nest: `admin` allows everything and belongs to no tenant, `write`
allows changes to the key's tenant, and `read` allows reads of it.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
import threading
import time
from dataclasses import dataclass
from typing import Any, Literal

from tracker.errors import AuthenticationError, Conflict, NotFound, PermissionDenied

__all__ = [
    "ADMIN_KEY_ID",
    "KEY_TEXT_PREFIX",
    "SCOPES",
    "ApiKey",
    "CreatedApiKey",
    "clear_cache",
    "create_api_key",
    "get_api_key",
    "hash_api_key",
    "list_api_keys",
    "parse_api_key",
    "require_scope",
    "revoke_api_key",
    "verify_api_key",
]

Scope = Literal["read", "write", "admin"]
SCOPES: tuple[Scope, ...] = ("read", "write", "admin")
_SCOPE_RANK = {"read": 0, "write": 1, "admin": 2}

KEY_TEXT_PREFIX = "trk_"
# key_id of the key taken from ADMIN_API_KEY; it never exists in the registry.
ADMIN_KEY_ID = "env-admin"
MAX_KEY_LENGTH = 128
MAX_NAME_LENGTH = 100

_KEY_PATTERN = re.compile(r"trk_([0-9a-f]{12})_([A-Za-z0-9_-]{43})")

# Successful verifications are cached for this long, so a key revoked or a tenant
# disabled through another process is still accepted here for up to this many seconds.
CACHE_TTL_SECONDS = 10.0
CACHE_MAX_ENTRIES = 1024


@dataclass(frozen=True, slots=True)
class ApiKey:
    """A stored API key without its secret.

    `key_prefix` is None for admin keys; `created_at` and `revoked_at` are Unix seconds.
    """

    key_id: str
    key_prefix: str | None
    scope: Scope
    name: str = ""
    created_at: int = 0
    revoked_at: int | None = None

    def allows(self, scope: Scope) -> bool:
        return _SCOPE_RANK[self.scope] >= _SCOPE_RANK[scope]


@dataclass(frozen=True, slots=True)
class CreatedApiKey:
    """A new key and its raw text, which the registry cannot produce again."""

    api_key: ApiKey
    raw_key: str


def hash_api_key(raw_key: str) -> bytes:
    """Return the SHA-256 digest stored in `api_keys.key_hash`."""
    return hashlib.sha256(raw_key.encode("utf-8")).digest()


def parse_api_key(raw_key: str) -> tuple[str, str]:
    """Split a raw key into `(key_id, secret)`; raise AuthenticationError if malformed."""
    if not raw_key:
        raise AuthenticationError(
            "missing", "API key is missing: send it as 'Authorization: Bearer trk_...'"
        )
    if len(raw_key) > MAX_KEY_LENGTH or not _KEY_PATTERN.fullmatch(raw_key):
        raise AuthenticationError(
            "malformed",
            "API key is malformed: expected trk_<12 hex digits>_<43 base64url characters>",
        )
    key_id, secret = raw_key[len(KEY_TEXT_PREFIX) :].split("_", 1)
    return key_id, secret


def create_api_key(
    registry: Any, *, key_prefix: str | None, scope: Scope, name: str = ""
) -> CreatedApiKey:
    """Create a key for a tenant (read or write) or an admin key (no tenant)."""
    if scope not in _SCOPE_RANK:
        raise ValueError(f"scope must be one of read, write, admin, got {str(scope)[:50]!r}")
    if scope == "admin" and key_prefix is not None:
        raise ValueError("admin keys belong to no tenant: pass key_prefix=None")
    if scope != "admin" and not key_prefix:
        raise ValueError(f"a {scope} key needs the key_prefix of its tenant")
    if len(name) > MAX_NAME_LENGTH:
        raise ValueError(
            f"key name is {len(name)} characters long, the maximum is {MAX_NAME_LENGTH}"
        )

    key_id = secrets.token_hex(6)
    secret = base64.urlsafe_b64encode(secrets.token_bytes(32)).rstrip(b"=").decode("ascii")
    raw_key = f"{KEY_TEXT_PREFIX}{key_id}_{secret}"
    now = int(time.time())

    with registry.transaction() as connection:
        if key_prefix is not None:
            tenant = connection.execute(
                "SELECT 1 FROM tenants WHERE key_prefix = ?", (key_prefix,)
            ).fetchone()
            if tenant is None:
                raise NotFound(f"tenant {key_prefix[:50]!r} not found")
        if connection.execute("SELECT 1 FROM api_keys WHERE key_id = ?", (key_id,)).fetchone():
            # 48 random bits make this practically unreachable; the caller may simply retry.
            raise Conflict(f"API key id {key_id} already exists; retry the request")
        connection.execute(
            "INSERT INTO api_keys (key_id, key_prefix, key_hash, scope, name, created_at)"
            " VALUES (?, ?, ?, ?, ?, ?)",
            (key_id, key_prefix, hash_api_key(raw_key), scope, name, now),
        )
    api_key = ApiKey(key_id=key_id, key_prefix=key_prefix, scope=scope, name=name, created_at=now)
    return CreatedApiKey(api_key=api_key, raw_key=raw_key)


_COLUMNS = "key_id, key_prefix, scope, name, created_at, revoked_at"


def _row_to_key(row: Any) -> ApiKey:
    return ApiKey(
        key_id=row[0],
        key_prefix=row[1],
        scope=row[2],
        name=row[3],
        created_at=row[4],
        revoked_at=row[5],
    )


def get_api_key(registry: Any, key_id: str, *, key_prefix: str | None = None) -> ApiKey:
    """Return one key; with `key_prefix`, only if it belongs to that tenant."""
    row = registry.connection().execute(_VERIFY_SQL, (key_id,)).fetchone()
    if row is None or (key_prefix is not None and row[1] != key_prefix):
        raise NotFound(f"API key {key_id[:50]!r} not found")
    return _row_to_key(row)


def list_api_keys(
    registry: Any, key_prefix: str | None, *, include_revoked: bool = True
) -> list[ApiKey]:
    """List a tenant's keys, or every key when `key_prefix` is None, oldest first."""
    sql = f"SELECT {_COLUMNS} FROM api_keys"
    conditions: list[str] = []
    args: list[Any] = []
    if key_prefix is not None:
        conditions.append("key_prefix = ?")
        args.append(key_prefix)
    if not include_revoked:
        conditions.append("revoked_at IS NULL")
    if conditions:
        sql += " WHERE " + " AND ".join(conditions)
    sql += " ORDER BY created_at, key_id"
    return [_row_to_key(row) for row in registry.connection().execute(sql, args)]


def revoke_api_key(registry: Any, key_id: str, *, key_prefix: str | None = None) -> ApiKey:
    """Revoke a key; with `key_prefix`, only a key of that tenant. Revoking twice is a no-op."""
    now = int(time.time())
    with registry.transaction() as connection:
        row = connection.execute(
            f"SELECT {_COLUMNS} FROM api_keys WHERE key_id = ?", (key_id,)
        ).fetchone()
        if row is None or (key_prefix is not None and row[1] != key_prefix):
            raise NotFound(f"API key {key_id[:50]!r} not found")
        if row[5] is None:
            connection.execute("UPDATE api_keys SET revoked_at = ? WHERE key_id = ?", (now, key_id))
    _forget(key_id)
    return get_api_key(registry, key_id)


# Cache of successful verifications: SHA-256 of the raw key -> (ApiKey, expiry on the
# monotonic clock). Keyed by registry path too, so two registries never share entries.
_cache: dict[tuple[str, bytes], tuple[ApiKey, float]] = {}
_cache_lock = threading.Lock()
_DUMMY_HASH = hashlib.sha256(b"no such key").digest()
_VERIFY_SQL = (
    "SELECT k.key_id, k.key_prefix, k.scope, k.name, k.created_at, k.revoked_at,"
    " k.key_hash, t.status"
    " FROM api_keys AS k LEFT JOIN tenants AS t ON t.key_prefix = k.key_prefix"
    " WHERE k.key_id = ?"
)
_VERIFY_SQL = (
    "SELECT k.key_id, k.key_prefix, k.scope, k.name, k.created_at, k.revoked_at,"
    " k.key_hash, t.status"
    " FROM api_keys AS k LEFT JOIN tenants AS t ON t.key_prefix = k.key_prefix"
    " WHERE k.key_id = ?"
)


def clear_cache() -> None:
    """Drop every cached verification (tests and key rotation use this)."""
    with _cache_lock:
        _cache.clear()


def _forget(key_id: str) -> None:
    with _cache_lock:
        for cache_key in [k for k, (api_key, _) in _cache.items() if api_key.key_id == key_id]:
            del _cache[cache_key]


def verify_api_key(registry: Any, raw_key: str, *, admin_key: str | None = None) -> ApiKey:
    """Return the key that `raw_key` proves, or raise AuthenticationError.

    `admin_key` is the value of ADMIN_API_KEY, if set; it is compared in constant
    time and yields an admin key with key_id `env-admin`. Stored keys are found by
    their public key_id and checked by comparing SHA-256 digests in constant time.
    Revoked keys and keys of disabled tenants are rejected.
    """
    if (
        admin_key
        and raw_key
        # Digests of equal length, so the comparison time does not reveal the key's length.
        and hmac.compare_digest(hash_api_key(raw_key), hash_api_key(admin_key))
    ):
        return ApiKey(key_id=ADMIN_KEY_ID, key_prefix=None, scope="admin", name="ADMIN_API_KEY")

    key_id, _ = parse_api_key(raw_key)
    digest = hash_api_key(raw_key)
    cache_key = (str(getattr(registry, "path", id(registry))), digest)
    now = time.monotonic()
    with _cache_lock:
        cached = _cache.get(cache_key)
    if cached is not None and cached[1] > now:
        return cached[0]

    row = registry.connection().execute(_VERIFY_SQL, (key_id,)).fetchone()
    # Compare against a fixed digest when the id is unknown, so both paths do the same work.
    stored = bytes(row[6]) if row is not None else _DUMMY_HASH
    matches = hmac.compare_digest(stored, digest)
    if row is None or not matches:
        raise AuthenticationError("unknown", "API key is not valid: check it or create a new one")
    if row[5] is not None:
        raise AuthenticationError("revoked", f"API key {key_id} was revoked: create a new one")
    if row[1] is not None and row[7] != "active":
        raise AuthenticationError("tenant_disabled", f"the tenant of API key {key_id} is disabled")

    api_key = _row_to_key(row)
    with _cache_lock:
        if len(_cache) >= CACHE_MAX_ENTRIES:
            _cache.clear()
        _cache[cache_key] = (api_key, now + CACHE_TTL_SECONDS)
    return api_key


def require_scope(api_key: ApiKey, scope: Scope) -> None:
    """Raise PermissionDenied unless `api_key` allows `scope`."""
    if not api_key.allows(scope):
        raise PermissionDenied(
            scope,
            f"this request needs a {scope} key, but key {api_key.key_id} has {api_key.scope} scope",
        )
