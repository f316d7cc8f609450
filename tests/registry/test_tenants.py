"""Tenant registry functions against a real SQLite registry."""

from __future__ import annotations

import re
import threading

import pytest

from tracker.errors import Conflict, NotFound, RegistryError
from tracker.registry.db import Registry
from tracker.registry.tenants import (
    create_tenant,
    disable_tenant,
    enable_tenant,
    get_tenant,
    list_tenants,
    load_tenant_secrets,
    retire_secret,
    rotate_aes_key,
    rotate_hmac_secret,
    set_plan,
)


@pytest.fixture
def registry(data_dir):
    handle = Registry(data_dir / "registry.db")
    yield handle
    handle.close()


def secrets_of(registry, key_prefix):
    return {tenant.key_prefix: tenant for tenant in load_tenant_secrets(registry)}[key_prefix]


def test_create_generates_prefix_and_secrets(registry):
    created = create_tenant(registry)
    tenant = get_tenant(registry, created.key_prefix)

    assert len(created.key_prefix) == 8
    assert re.fullmatch(r"[a-z0-9]{8}", created.key_prefix)
    assert len(created.hmac_secret) == 32
    assert len(created.aes_key) == 32
    assert created.aes_key_id == 0
    assert tenant.plan == "free"
    assert tenant.status == "active"
    assert tenant.hmac_key_ids == (0,)
    assert tenant.aes_key_ids == (0,)
    assert created.hmac_secret.hex() not in repr(created)


def test_create_rejects_bad_and_duplicate_prefix(registry):
    create_tenant(registry, key_prefix="acme")
    with pytest.raises(Conflict):
        create_tenant(registry, key_prefix="acme")
    for bad in ("", "UPPER", "with-dash", "a" * 33, "ümlaut"):
        with pytest.raises(RegistryError, match="invalid key prefix"):
            create_tenant(registry, key_prefix=bad)
    with pytest.raises(RegistryError, match="invalid plan"):
        create_tenant(registry, key_prefix="other", plan="gold")


def test_rotate_and_retire_hmac_secret(registry):
    created = create_tenant(registry, key_prefix="acme")
    rotated = rotate_hmac_secret(registry, "acme")

    assert rotated.key_id == 1
    assert secrets_of(registry, "acme").hmac_secrets == (rotated.secret, created.hmac_secret)

    retire_secret(registry, "acme", "hmac", 0)
    assert secrets_of(registry, "acme").hmac_secrets == (rotated.secret,)
    with pytest.raises(Conflict, match="last active"):
        retire_secret(registry, "acme", "hmac", 1)
    with pytest.raises(NotFound):
        retire_secret(registry, "acme", "hmac", 7)


def test_rotate_aes_key_adds_key_id(registry):
    created = create_tenant(registry, key_prefix="acme")
    rotated = rotate_aes_key(registry, "acme")
    assert rotated.key_id == 1
    assert secrets_of(registry, "acme").aes_keys == {0: created.aes_key, 1: rotated.secret}


def test_plan_and_status_changes(registry):
    create_tenant(registry, key_prefix="acme")
    set_plan(registry, "acme", "pro")
    disable_tenant(registry, "acme")
    assert (get_tenant(registry, "acme").plan, get_tenant(registry, "acme").status) == (
        "pro",
        "disabled",
    )
    enable_tenant(registry, "acme")
    assert get_tenant(registry, "acme").status == "active"
    with pytest.raises(RegistryError):
        set_plan(registry, "acme", "enterprise")


def test_missing_tenant_raises_not_found(registry):
    for call in (
        lambda: get_tenant(registry, "nobody"),
        lambda: rotate_hmac_secret(registry, "nobody"),
        lambda: rotate_aes_key(registry, "nobody"),
        lambda: set_plan(registry, "nobody", "pro"),
        lambda: disable_tenant(registry, "nobody"),
    ):
        with pytest.raises(NotFound):
            call()


def test_changes_bump_updated_at_for_incremental_loads(registry):
    create_tenant(registry, key_prefix="old")
    since = get_tenant(registry, "old").updated_at + 1
    registry.connection().execute(
        "UPDATE tenants SET updated_at = updated_at - 100 WHERE key_prefix = 'old'"
    )
    create_tenant(registry, key_prefix="new")
    rotate_hmac_secret(registry, "new")

    changed = load_tenant_secrets(registry, changed_since=since - 1)

    assert [tenant.key_prefix for tenant in changed] == ["new"]
    assert len(changed[0].hmac_secrets) == 2
    assert [tenant.key_prefix for tenant in list_tenants(registry)] == ["new", "old"]


def test_concurrent_rotations_get_distinct_ids(registry):
    create_tenant(registry, key_prefix="acme")
    ids: list[int] = []

    def rotate() -> None:
        ids.append(rotate_aes_key(registry, "acme").key_id)

    threads = [threading.Thread(target=rotate) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert sorted(ids) == list(range(1, 9))
