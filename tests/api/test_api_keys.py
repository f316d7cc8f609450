"""Tests of API key creation, listing, revocation and verification on a real SQLite registry."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from tracker.errors import AuthenticationError, NotFound, PermissionDenied
from tracker.registry import api_keys
from tracker.registry.api_keys import (
    create_api_key,
    hash_api_key,
    list_api_keys,
    parse_api_key,
    require_scope,
    revoke_api_key,
    verify_api_key,
)
from tracker.registry.db import Registry


@pytest.fixture
def registry(tmp_path: Path) -> Registry:
    api_keys.clear_cache()
    registry = Registry(tmp_path / "registry.db")
    now = int(time.time() * 1000)
    for prefix in ("acme", "globex"):
        registry.connection().execute(
            "INSERT INTO tenants (key_prefix, created_at, updated_at) VALUES (?, ?, ?)",
            (prefix, now, now),
        )
    return registry


def test_created_key_has_documented_format(registry: Registry) -> None:
    created = create_api_key(registry, key_prefix="acme", scope="read")
    key_id, secret = parse_api_key(created.raw_key)

    assert created.raw_key.startswith("trk_")
    assert key_id == created.api_key.key_id
    assert len(key_id) == 12
    assert len(secret) == 43


def test_registry_stores_only_the_hash(registry: Registry) -> None:
    created = create_api_key(registry, key_prefix="acme", scope="write")
    rows = registry.connection().execute("SELECT * FROM api_keys").fetchall()

    assert len(rows) == 1
    assert bytes(rows[0][2]) == hash_api_key(created.raw_key)
    assert created.raw_key not in repr(rows)
    assert created.raw_key.split("_", 2)[2] not in repr(rows)


def test_verify_returns_key_and_tenant(registry: Registry) -> None:
    created = create_api_key(registry, key_prefix="acme", scope="write", name="deploy")
    verified = verify_api_key(registry, created.raw_key)

    assert verified.key_id == created.api_key.key_id
    assert verified.key_prefix == "acme"
    assert verified.scope == "write"
    assert verified.name == "deploy"


@pytest.mark.parametrize(
    ("raw_key", "reason"),
    [
        ("", "missing"),
        ("Bearer abc", "malformed"),
        ("trk_0123456789ab", "malformed"),
        ("trk_0123456789AB_" + "A" * 43, "malformed"),
        ("trk_0123456789ab_" + "A" * 42, "malformed"),
        ("trk_0123456789ab_" + "A" * 5000, "malformed"),
        ("trk_0123456789ab_" + "A" * 42 + "\u00e9", "malformed"),
        ("trk_0123456789ab_" + "A" * 43, "unknown"),
    ],
)
def test_verify_rejects_bad_key(registry: Registry, raw_key: str, reason: str) -> None:
    with pytest.raises(AuthenticationError) as caught:
        verify_api_key(registry, raw_key)

    assert caught.value.reason == reason


def test_verify_rejects_wrong_secret_for_known_id(registry: Registry) -> None:
    created = create_api_key(registry, key_prefix="acme", scope="read")
    last = created.raw_key[-1]
    forged = created.raw_key[:-1] + ("A" if last != "A" else "B")

    with pytest.raises(AuthenticationError) as caught:
        verify_api_key(registry, forged)

    assert caught.value.reason == "unknown"
    assert created.raw_key not in str(caught.value)


def test_revoked_key_is_rejected_at_once(registry: Registry) -> None:
    created = create_api_key(registry, key_prefix="acme", scope="read")
    verify_api_key(registry, created.raw_key)  # fills the cache

    revoked = revoke_api_key(registry, created.api_key.key_id, key_prefix="acme")

    assert revoked.revoked_at is not None
    with pytest.raises(AuthenticationError) as caught:
        verify_api_key(registry, created.raw_key)
    assert caught.value.reason == "revoked"


def test_revoke_refuses_other_tenants_key(registry: Registry) -> None:
    created = create_api_key(registry, key_prefix="globex", scope="read")

    with pytest.raises(NotFound):
        revoke_api_key(registry, created.api_key.key_id, key_prefix="acme")
    assert verify_api_key(registry, created.raw_key).key_prefix == "globex"


def test_disabled_tenant_key_is_rejected(registry: Registry) -> None:
    created = create_api_key(registry, key_prefix="acme", scope="read")
    registry.connection().execute(
        "UPDATE tenants SET status = 'disabled' WHERE key_prefix = 'acme'"
    )

    with pytest.raises(AuthenticationError) as caught:
        verify_api_key(registry, created.raw_key)

    assert caught.value.reason == "tenant_disabled"


def test_list_is_scoped_to_tenant(registry: Registry) -> None:
    own = create_api_key(registry, key_prefix="acme", scope="read")
    create_api_key(registry, key_prefix="globex", scope="write")
    admin = create_api_key(registry, key_prefix=None, scope="admin")

    acme_ids = [key.key_id for key in list_api_keys(registry, "acme")]
    all_ids = {key.key_id for key in list_api_keys(registry, None)}

    assert acme_ids == [own.api_key.key_id]
    assert admin.api_key.key_id in all_ids
    assert len(all_ids) == 3


def test_create_rejects_invalid_arguments(registry: Registry) -> None:
    with pytest.raises(ValueError, match="admin keys belong to no tenant"):
        create_api_key(registry, key_prefix="acme", scope="admin")
    with pytest.raises(ValueError, match="needs the key_prefix"):
        create_api_key(registry, key_prefix=None, scope="read")
    with pytest.raises(ValueError, match="scope must be one of"):
        create_api_key(registry, key_prefix="acme", scope="owner")  # type: ignore[arg-type]
    with pytest.raises(NotFound):
        create_api_key(registry, key_prefix="initech", scope="read")


def test_admin_key_from_environment(registry: Registry) -> None:
    admin_value = "a-long-operator-chosen-admin-secret"

    verified = verify_api_key(registry, admin_value, admin_key=admin_value)

    assert verified.scope == "admin"
    assert verified.key_prefix is None
    with pytest.raises(AuthenticationError):
        verify_api_key(registry, admin_value + "x", admin_key=admin_value)


def test_scopes_nest(registry: Registry) -> None:
    read = create_api_key(registry, key_prefix="acme", scope="read").api_key
    write = create_api_key(registry, key_prefix="acme", scope="write").api_key

    require_scope(write, "read")
    require_scope(write, "write")
    with pytest.raises(PermissionDenied) as caught:
        require_scope(read, "write")
    assert caught.value.scope == "write"
    with pytest.raises(PermissionDenied):
        require_scope(write, "admin")


def test_verify_is_thread_safe(registry: Registry) -> None:
    keys = [create_api_key(registry, key_prefix="acme", scope="read") for _ in range(4)]
    errors: list[BaseException] = []

    def hammer(raw_key: str) -> None:
        try:
            for _ in range(200):
                assert verify_api_key(registry, raw_key).key_prefix == "acme"
        except BaseException as error:  # collected and asserted below
            errors.append(error)

    threads = [threading.Thread(target=hammer, args=(key.raw_key,)) for key in keys]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert errors == []
