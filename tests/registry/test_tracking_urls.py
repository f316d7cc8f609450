"""Tracking-URL registry functions against a real SQLite registry."""

from __future__ import annotations

import pytest

from tracker.errors import NotFound, RegistryError
from tracker.registry.db import Registry
from tracker.registry.tenants import create_tenant
from tracker.registry.tracking_urls import (
    create_tracking_url,
    disable_tracking_url,
    enable_tracking_url,
    get_tracking_url,
    list_tracking_urls,
    load_tracking_urls,
    rotate_destination,
)


@pytest.fixture
def registry(data_dir):
    handle = Registry(data_dir / "registry.db")
    create_tenant(handle, key_prefix="acme")
    create_tenant(handle, key_prefix="beta")
    yield handle
    handle.close()


def test_create_and_get(registry):
    link = create_tracking_url(
        registry, "acme", "https://land.example/?a=1", name="spring", params={"c": "1"}
    )

    stored = get_tracking_url(registry, link.tu_id)

    assert link.tu_id.startswith("tu_")
    assert len(link.tu_id) == 39
    assert stored == link
    assert stored.params == {"c": "1"}
    assert stored.active


@pytest.mark.parametrize(
    "destination",
    [
        "javascript:alert(1)",
        "//evil.example",
        "https://a@evil.example",
        "https:\\\\evil.example",
        "ftp://x.example",
        "",
    ],
)
def test_invalid_destination_rejected(registry, destination):
    with pytest.raises(RegistryError, match="invalid destination"):
        create_tracking_url(registry, "acme", destination)


def test_unknown_tenant_rejected(registry):
    with pytest.raises(NotFound):
        create_tracking_url(registry, "nobody", "https://land.example/")


def test_bad_params_rejected(registry):
    with pytest.raises(RegistryError):
        create_tracking_url(registry, "acme", "https://land.example/", params={"a": 1})


def test_rotate_disable_enable(registry):
    link = create_tracking_url(registry, "acme", "https://before.example/")

    assert (
        rotate_destination(registry, link.tu_id, "https://after.example/").destination
        == "https://after.example/"
    )
    assert disable_tracking_url(registry, link.tu_id).status == "disabled"
    assert enable_tracking_url(registry, link.tu_id).status == "active"
    with pytest.raises(RegistryError):
        rotate_destination(registry, link.tu_id, "javascript:x")
    with pytest.raises(NotFound):
        disable_tracking_url(registry, "tu_missing")


def test_list_by_tenant_and_load_changes(registry):
    first = create_tracking_url(registry, "acme", "https://a.example/")
    second = create_tracking_url(registry, "beta", "https://b.example/")
    registry.connection().execute(
        "UPDATE tracking_urls SET updated_at = 1 WHERE tu_id = ?", (first.tu_id,)
    )

    assert [link.tu_id for link in list_tracking_urls(registry, key_prefix="beta")] == [
        second.tu_id
    ]
    assert [link.tu_id for link in list_tracking_urls(registry)] == [second.tu_id, first.tu_id]
    assert [link.tu_id for link in load_tracking_urls(registry, changed_since=2)] == [second.tu_id]
    assert len(load_tracking_urls(registry)) == 2
