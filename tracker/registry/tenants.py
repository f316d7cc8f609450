"""Tenants and their click secrets: create, read, rotate, retire, change plan and status.

A tenant owns HMAC secrets (kind `hmac`) for signed clicks and AES-256 keys
(kind `aes`) for encrypted clicks in `tenant_secrets`. Rotation adds a new
active row and leaves the old one active, so links already handed out keep
working until the old row is retired. Every change also bumps
`tenants.updated_at` (Unix seconds), which is what caches poll for changes.
"""

from __future__ import annotations

import re
import secrets
import sqlite3
import time
from dataclasses import dataclass, field
from typing import Any

from tracker.errors import Conflict, NotFound, RegistryError

__all__ = [
    "GENERATED_PREFIX_LEN",
    "PLANS",
    "SECRET_BYTES",
    "NewTenant",
    "RotatedSecret",
    "Tenant",
    "TenantSecrets",
    "create_tenant",
    "disable_tenant",
    "enable_tenant",
    "get_tenant",
    "list_tenants",
    "load_tenant_secrets",
    "retire_secret",
    "rotate_aes_key",
    "rotate_hmac_secret",
    "set_plan",
    "validate_key_prefix",
]

PLANS = ("free", "pro")
SECRET_BYTES = 32
GENERATED_PREFIX_LEN = 8
MAX_KEY_ID = 255

_KEY_PREFIX = re.compile(r"^[a-z0-9]{1,32}$")
_PREFIX_ALPHABET = "abcdefghijklmnopqrstuvwxyz0123456789"


@dataclass(frozen=True, slots=True)
class Tenant:
    """A tenant row with the ids of its active secrets (never the secret bytes)."""

    key_prefix: str
    name: str
    plan: str
    status: str
    created_at: int
    updated_at: int
    hmac_key_ids: tuple[int, ...]
    aes_key_ids: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class NewTenant:
    """A tenant just created, with its first secret and key; shown once, stored nowhere else."""

    key_prefix: str
    hmac_secret: bytes = field(repr=False)
    aes_key: bytes = field(repr=False)
    aes_key_id: int


@dataclass(frozen=True, slots=True)
class RotatedSecret:
    """A secret or key just added by a rotation, with the id that names it."""

    key_prefix: str
    kind: str
    key_id: int
    secret: bytes = field(repr=False)


@dataclass(frozen=True, slots=True)
class TenantSecrets:
    """A tenant's status, plan and active secret bytes, as the ingest cache keeps them."""

    key_prefix: str
    status: str
    plan: str
    updated_at: int
    hmac_secrets: tuple[bytes, ...] = field(repr=False)
    aes_keys: dict[int, bytes] = field(repr=False)

    @property
    def active(self) -> bool:
        return self.status == "active"


def validate_key_prefix(key_prefix: str) -> str:
    """Return `key_prefix` if it is 1 to 32 characters of [a-z0-9]; raise RegistryError otherwise."""
    if not isinstance(key_prefix, str) or not _KEY_PREFIX.match(key_prefix):
        raise RegistryError(
            f"invalid key prefix {str(key_prefix)[:50]!r}: expected 1 to 32 characters of [a-z0-9]"
        )
    return key_prefix


def create_tenant(
    registry: Any, *, key_prefix: str | None = None, name: str = "", plan: str = "free"
) -> NewTenant:
    """Insert a tenant with one HMAC secret and one AES key (id 0); raise Conflict if it exists.

    Without `key_prefix`, a random 8-character one is generated.
    """
    _check_plan(plan)
    prefix = validate_key_prefix(key_prefix) if key_prefix is not None else _random_prefix()
    hmac_secret = secrets.token_bytes(SECRET_BYTES)
    aes_key = secrets.token_bytes(SECRET_BYTES)
    now = _now()

    with registry.transaction() as connection:
        try:
            connection.execute(
                "INSERT INTO tenants (key_prefix, name, plan, status, created_at, updated_at)"
                " VALUES (?, ?, ?, 'active', ?, ?)",
                (prefix, name, plan, now, now),
            )
        except sqlite3.IntegrityError:
            raise Conflict(f"tenant {prefix!r} already exists") from None
        _insert_secret(connection, prefix, "hmac", 0, hmac_secret, now)
        _insert_secret(connection, prefix, "aes", 0, aes_key, now)

    return NewTenant(key_prefix=prefix, hmac_secret=hmac_secret, aes_key=aes_key, aes_key_id=0)


def get_tenant(registry: Any, key_prefix: str) -> Tenant:
    """Return one tenant; raise NotFound if there is none with this prefix."""
    connection = registry.connection()
    row = connection.execute(
        "SELECT key_prefix, name, plan, status, created_at, updated_at FROM tenants WHERE key_prefix = ?",
        (key_prefix,),
    ).fetchone()
    if row is None:
        raise NotFound(f"tenant {str(key_prefix)[:50]!r} not found")
    key_ids = _active_key_ids(connection, key_prefix)
    return _tenant_from_row(row, key_ids)


def list_tenants(registry: Any) -> list[Tenant]:
    """Return every tenant ordered by key prefix."""
    connection = registry.connection()
    rows = connection.execute(
        "SELECT key_prefix, name, plan, status, created_at, updated_at FROM tenants ORDER BY key_prefix"
    ).fetchall()
    key_ids = _active_key_ids(connection, None)
    return [_tenant_from_row(row, key_ids) for row in rows]


def rotate_hmac_secret(registry: Any, key_prefix: str) -> RotatedSecret:
    """Add a new active HMAC secret; older ones stay active until `retire_secret`."""
    return _rotate(registry, key_prefix, "hmac")


def rotate_aes_key(registry: Any, key_prefix: str) -> RotatedSecret:
    """Add a new active AES key under the next key id; older keys still decrypt old links."""
    return _rotate(registry, key_prefix, "aes")


def retire_secret(registry: Any, key_prefix: str, kind: str, key_id: int) -> None:
    """Retire one secret or key so links made with it stop verifying.

    Raises NotFound if the secret does not exist and Conflict if it is the
    tenant's last active one of its kind.
    """
    _check_kind(kind)
    now = _now()
    with registry.transaction() as connection:
        row = connection.execute(
            "SELECT status FROM tenant_secrets WHERE key_prefix = ? AND kind = ? AND key_id = ?",
            (key_prefix, kind, key_id),
        ).fetchone()
        if row is None:
            raise NotFound(f"{kind} key {key_id} of tenant {str(key_prefix)[:50]!r} not found")
        if row[0] == "retired":
            return
        (active,) = connection.execute(
            "SELECT count(*) FROM tenant_secrets WHERE key_prefix = ? AND kind = ? AND status = 'active'",
            (key_prefix, kind),
        ).fetchone()
        if active <= 1:
            raise Conflict(
                f"cannot retire the last active {kind} key of tenant {key_prefix!r}; rotate first"
            )
        connection.execute(
            "UPDATE tenant_secrets SET status = 'retired' WHERE key_prefix = ? AND kind = ? AND key_id = ?",
            (key_prefix, kind, key_id),
        )
        _touch(connection, key_prefix, now)


def set_plan(registry: Any, key_prefix: str, plan: str) -> None:
    """Change the tenant's plan (`free` or `pro`)."""
    _check_plan(plan)
    _update_tenant(registry, key_prefix, "plan", plan)


def disable_tenant(registry: Any, key_prefix: str) -> None:
    """Disable the tenant: its clicks, postbacks and batches are rejected from the next refresh."""
    _update_tenant(registry, key_prefix, "status", "disabled")


def enable_tenant(registry: Any, key_prefix: str) -> None:
    """Enable a disabled tenant again."""
    _update_tenant(registry, key_prefix, "status", "active")


def load_tenant_secrets(registry: Any, *, changed_since: int | None = None) -> list[TenantSecrets]:
    """Return tenants with their active secret bytes, only those updated at or after `changed_since`.

    The comparison is inclusive so a change made in the same second as the
    previous load is not missed; callers merge by key prefix.
    """
    connection = registry.connection()
    if changed_since is None:
        rows = connection.execute(
            "SELECT key_prefix, status, plan, updated_at FROM tenants"
        ).fetchall()
        secret_rows = connection.execute(
            "SELECT key_prefix, kind, key_id, secret FROM tenant_secrets WHERE status = 'active' ORDER BY key_id DESC"
        ).fetchall()
    else:
        rows = connection.execute(
            "SELECT key_prefix, status, plan, updated_at FROM tenants WHERE updated_at >= ?",
            (changed_since,),
        ).fetchall()
        secret_rows = connection.execute(
            "SELECT s.key_prefix, s.kind, s.key_id, s.secret FROM tenant_secrets AS s"
            " JOIN tenants AS t ON t.key_prefix = s.key_prefix"
            " WHERE t.updated_at >= ? AND s.status = 'active' ORDER BY s.key_id DESC",
            (changed_since,),
        ).fetchall()

    hmac: dict[str, list[bytes]] = {}
    aes: dict[str, dict[int, bytes]] = {}
    for prefix, kind, key_id, secret in secret_rows:
        if kind == "hmac":
            hmac.setdefault(prefix, []).append(bytes(secret))
        else:
            aes.setdefault(prefix, {})[key_id] = bytes(secret)

    return [
        TenantSecrets(
            key_prefix=prefix,
            status=status,
            plan=plan,
            updated_at=updated_at,
            hmac_secrets=tuple(hmac.get(prefix, ())),
            aes_keys=aes.get(prefix, {}),
        )
        for prefix, status, plan, updated_at in rows
    ]


def _rotate(registry: Any, key_prefix: str, kind: str) -> RotatedSecret:
    secret = secrets.token_bytes(SECRET_BYTES)
    now = _now()
    with registry.transaction() as connection:
        _require_tenant(connection, key_prefix)
        (highest,) = connection.execute(
            "SELECT max(key_id) FROM tenant_secrets WHERE key_prefix = ? AND kind = ?",
            (key_prefix, kind),
        ).fetchone()
        key_id = 0 if highest is None else highest + 1
        if key_id > MAX_KEY_ID:
            raise Conflict(f"tenant {key_prefix!r} has used all {MAX_KEY_ID + 1} {kind} key ids")
        _insert_secret(connection, key_prefix, kind, key_id, secret, now)
        _touch(connection, key_prefix, now)
    return RotatedSecret(key_prefix=key_prefix, kind=kind, key_id=key_id, secret=secret)


def _update_tenant(registry: Any, key_prefix: str, column: str, value: str) -> None:
    now = _now()
    with registry.transaction() as connection:
        # `column` comes from this module only, never from a caller.
        cursor = connection.execute(
            f"UPDATE tenants SET {column} = ?, updated_at = ? WHERE key_prefix = ?",
            (value, now, key_prefix),
        )
        if cursor.rowcount == 0:
            raise NotFound(f"tenant {str(key_prefix)[:50]!r} not found")


def _insert_secret(
    connection: Any, key_prefix: str, kind: str, key_id: int, secret: bytes, now: int
) -> None:
    connection.execute(
        "INSERT INTO tenant_secrets (key_prefix, kind, key_id, secret, status, created_at)"
        " VALUES (?, ?, ?, ?, 'active', ?)",
        (key_prefix, kind, key_id, secret, now),
    )


def _touch(connection: Any, key_prefix: str, now: int) -> None:
    connection.execute("UPDATE tenants SET updated_at = ? WHERE key_prefix = ?", (now, key_prefix))


def _require_tenant(connection: Any, key_prefix: str) -> None:
    if (
        connection.execute("SELECT 1 FROM tenants WHERE key_prefix = ?", (key_prefix,)).fetchone()
        is None
    ):
        raise NotFound(f"tenant {str(key_prefix)[:50]!r} not found")


def _active_key_ids(
    connection: Any, key_prefix: str | None
) -> dict[tuple[str, str], tuple[int, ...]]:
    query = "SELECT key_prefix, kind, key_id FROM tenant_secrets WHERE status = 'active'"
    arguments: tuple[str, ...] = ()
    if key_prefix is not None:
        query += " AND key_prefix = ?"
        arguments = (key_prefix,)
    grouped: dict[tuple[str, str], list[int]] = {}
    for prefix, kind, key_id in connection.execute(query + " ORDER BY key_id", arguments):
        grouped.setdefault((prefix, kind), []).append(key_id)
    return {key: tuple(ids) for key, ids in grouped.items()}


def _tenant_from_row(row: tuple, key_ids: dict[tuple[str, str], tuple[int, ...]]) -> Tenant:
    prefix, name, plan, status, created_at, updated_at = row
    return Tenant(
        key_prefix=prefix,
        name=name,
        plan=plan,
        status=status,
        created_at=created_at,
        updated_at=updated_at,
        hmac_key_ids=key_ids.get((prefix, "hmac"), ()),
        aes_key_ids=key_ids.get((prefix, "aes"), ()),
    )


def _random_prefix() -> str:
    return "".join(secrets.choice(_PREFIX_ALPHABET) for _ in range(GENERATED_PREFIX_LEN))


def _check_plan(plan: str) -> None:
    if plan not in PLANS:
        raise RegistryError(f"invalid plan {str(plan)[:50]!r}: expected one of {', '.join(PLANS)}")


def _check_kind(kind: str) -> None:
    if kind not in ("hmac", "aes"):
        raise RegistryError(f"invalid secret kind {str(kind)[:50]!r}: expected hmac or aes")


def _now() -> int:
    return int(time.time())
