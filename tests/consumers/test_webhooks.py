"""Webhook registry functions and the SSRF guard; nothing here opens a network connection."""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Any

import pytest

from tracker.consumers.ssrf import (
    DestinationRejected,
    NetworkPolicy,
    check_address,
    check_url,
    resolve_destination,
)
from tracker.consumers.webhooks import WebhookSettings
from tracker.errors import ConfigError, Conflict, NotFound
from tracker.registry import webhooks
from tracker.registry.db import Registry
from tracker.settings import Env


@pytest.fixture
def registry(tmp_path: Path) -> Registry:
    instance = Registry(tmp_path / "registry.db")
    for tenant in ("acme", "globex"):
        instance.connection().execute(
            "INSERT INTO tenants (key_prefix, created_at, updated_at) VALUES (?, 0, 0)", (tenant,)
        )
    return instance


def test_create_endpoint_returns_secret_once(registry: Registry) -> None:
    created = webhooks.create_endpoint(
        registry,
        key_prefix="acme",
        url="https://hooks.example.com/in",
        event_types=["click", "click"],
        param_filters={"sub1": "google"},
        description="orders",
    )

    assert created.secret.startswith("whsec_")
    assert len(created.secret) > 40
    assert created.endpoint.event_types == ("click",)
    listed = webhooks.list_endpoints(registry, "acme")
    assert [e.endpoint_id for e in listed] == [created.endpoint.endpoint_id]
    assert "secret" not in listed[0].to_dict()
    assert created.secret not in repr(listed[0])


def test_endpoint_tenant_isolation(registry: Registry) -> None:
    created = webhooks.create_endpoint(
        registry, key_prefix="acme", url="https://hooks.example.com/in"
    )
    endpoint_id = created.endpoint.endpoint_id

    assert webhooks.list_endpoints(registry, "globex") == []
    with pytest.raises(NotFound):
        webhooks.get_endpoint(registry, endpoint_id, key_prefix="globex")
    with pytest.raises(NotFound):
        webhooks.delete_endpoint(registry, endpoint_id, key_prefix="globex")
    assert webhooks.get_endpoint(registry, endpoint_id, key_prefix="acme").key_prefix == "acme"


def test_delete_endpoint_removes_it(registry: Registry) -> None:
    endpoint_id = webhooks.create_endpoint(
        registry, key_prefix="acme", url="https://a.example/"
    ).endpoint.endpoint_id

    webhooks.delete_endpoint(registry, endpoint_id)

    with pytest.raises(NotFound):
        webhooks.get_endpoint(registry, endpoint_id)


def test_disable_endpoint(registry: Registry) -> None:
    endpoint_id = webhooks.create_endpoint(
        registry, key_prefix="acme", url="https://a.example/"
    ).endpoint.endpoint_id

    assert webhooks.set_endpoint_status(registry, endpoint_id, "disabled").status == "disabled"
    with pytest.raises(ValueError, match="status"):
        webhooks.set_endpoint_status(registry, endpoint_id, "paused")  # type: ignore[arg-type]


def test_create_endpoint_unknown_tenant(registry: Registry) -> None:
    with pytest.raises(NotFound, match="nobody"):
        webhooks.create_endpoint(registry, key_prefix="nobody", url="https://a.example/")


@pytest.mark.parametrize(
    ("options", "field"),
    [
        ({"url": "ftp://a.example/"}, "url"),
        ({"url": "https://user:pw@a.example/"}, "url"),
        ({"url": "https://a.example/#frag"}, "url"),
        ({"url": "https://a.example/ x"}, "url"),
        ({"url": "https://" + "a" * 3000 + ".example/"}, "url"),
        ({"url": "http://"}, "url"),
        ({"url": "http://a.example:99999/"}, "url"),
        ({"event_types": "click"}, "event_types"),
        ({"event_types": ["bad type"]}, "event_types"),
        ({"event_types": [f"t{i}" for i in range(40)]}, "event_types"),
        ({"param_filters": {"k": 5}}, "param_filters"),
        ({"param_filters": {"": "v"}}, "param_filters"),
        ({"param_filters": {f"k{i}": "v" for i in range(20)}}, "param_filters"),
        ({"description": "d" * 600}, "description"),
    ],
)
def test_create_endpoint_rejects_invalid(
    registry: Registry, options: dict[str, Any], field: str
) -> None:
    arguments = {"key_prefix": "acme", "url": "https://a.example/", **options}

    with pytest.raises(ValueError) as caught:
        webhooks.create_endpoint(registry, **arguments)

    assert str(caught.value).startswith(f"{field}:")


@pytest.mark.parametrize(
    "url",
    [
        "http://169.254.169.254/latest/meta-data/",
        "http://10.0.0.1/",
        "http://192.168.1.1/",
        "http://172.16.0.1/",
        "http://100.64.0.1/",
        "http://127.0.0.1/",
        "http://0.0.0.0/",
        "http://[::1]/",
        "http://[::]/",
        "http://[fd00:ec2::254]/",
        "http://[fe80::1]/",
        "http://[::ffff:10.0.0.1]/",
        "http://[64:ff9b::a00:1]/",
        "http://[2002:a00:1::]/",
        "http://224.0.0.1/",
        "http://localhost/",
        "http://LOCALHOST./",
        "http://api.localhost/",
        "http://168.63.129.16/",
    ],
)
def test_registration_rejects_internal_literals(registry: Registry, url: str) -> None:
    with pytest.raises(DestinationRejected, match=r"^url:"):
        webhooks.create_endpoint(registry, key_prefix="acme", url=url)


def test_allowed_cidr_permits_loopback_only(registry: Registry) -> None:
    policy = NetworkPolicy(allowed_cidrs=(ipaddress.ip_network("127.0.0.1/32"),))

    created = webhooks.create_endpoint(
        registry, key_prefix="acme", url="http://127.0.0.1:9/", policy=policy
    )

    assert created.endpoint.url == "http://127.0.0.1:9/"
    with pytest.raises(DestinationRejected):
        check_url("http://127.0.0.2/", policy)
    with pytest.raises(DestinationRejected):
        check_url("http://[::1]/", policy)


def test_allow_private_keeps_metadata_blocked() -> None:
    policy = NetworkPolicy(allow_private=True)

    check_url("http://10.0.0.1/", policy)
    check_url("http://[::1]/", policy)
    for url in ("http://169.254.169.254/", "http://[fd00:ec2::254]/", "http://224.0.0.1/"):
        with pytest.raises(DestinationRejected):
            check_url(url, policy)


def test_explicit_cidr_can_allow_metadata() -> None:
    policy = NetworkPolicy(allowed_cidrs=(ipaddress.ip_network("169.254.169.254/32"),))

    check_address(ipaddress.ip_address("169.254.169.254"), policy)


def test_public_addresses_pass() -> None:
    for text in ("93.184.215.14", "2606:2800:21f:cb07:6820:80da:af6b:8b2c", "8.8.8.8"):
        check_address(ipaddress.ip_address(text), NetworkPolicy())


async def test_resolution_rejects_any_private_answer() -> None:
    async def resolver(host: str, port: int) -> list[Any]:
        return [ipaddress.ip_address("93.184.215.14"), ipaddress.ip_address("10.0.0.5")]

    parsed = check_url("https://mixed.example/", NetworkPolicy())

    with pytest.raises(DestinationRejected, match=r"10\.0\.0\.5"):
        await resolve_destination(parsed, NetworkPolicy(), resolver)


async def test_resolution_returns_checked_address() -> None:
    async def resolver(host: str, port: int) -> list[Any]:
        assert (host, port) == ("public.example", 8443)
        return [ipaddress.ip_address("93.184.215.14")]

    parsed = check_url("https://public.example:8443/x", NetworkPolicy())

    address = await resolve_destination(parsed, NetworkPolicy(), resolver)

    assert str(address) == "93.184.215.14"


async def test_resolution_failure_is_os_error() -> None:
    async def resolver(host: str, port: int) -> list[Any]:
        return []

    with pytest.raises(OSError, match="could not resolve"):
        await resolve_destination(
            check_url("https://none.example/", NetworkPolicy()), NetworkPolicy(), resolver
        )


def test_replay_rules(registry: Registry) -> None:
    from tracker.consumers import webhook_queue as queue

    endpoint = webhooks.create_endpoint(
        registry, key_prefix="acme", url="https://a.example/"
    ).endpoint
    delivery_id = webhooks.delivery_id_for(endpoint.endpoint_id, "e1")
    new = queue.NewDelivery(delivery_id, endpoint.endpoint_id, "acme", "e1", b"{}")

    assert queue.enqueue(registry, [new, new], 100.0) == 1
    assert queue.enqueue(registry, [new], 100.0) == 0
    with pytest.raises(Conflict, match="pending"):
        webhooks.replay(registry, delivery_id)
    with pytest.raises(NotFound):
        webhooks.replay(registry, delivery_id, key_prefix="globex")

    queue.mark_dead(registry, delivery_id, 8, "HTTP 500", 500, 200.0)
    assert webhooks.list_dead_letters(registry, key_prefix="globex") == []
    replayed = webhooks.replay(registry, delivery_id)
    assert (replayed.status, replayed.attempts) == ("pending", 0)


def test_list_deliveries_validates_arguments(registry: Registry) -> None:
    with pytest.raises(ValueError, match=r"^status:"):
        webhooks.list_deliveries(registry, status="lost")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"^limit:"):
        webhooks.list_deliveries(registry, limit=0)
    with pytest.raises(ValueError, match=r"^limit:"):
        webhooks.list_deliveries(registry, limit=10_000)


def test_delivery_id_is_stable() -> None:
    first = webhooks.delivery_id_for("wh_1", "event-1")

    assert first == webhooks.delivery_id_for("wh_1", "event-1")
    assert first != webhooks.delivery_id_for("wh_2", "event-1")
    assert first.startswith("dlv_")


def test_settings_reject_invalid_values() -> None:
    with pytest.raises(ConfigError) as caught:
        WebhookSettings.from_env(Env({"WEBHOOK_ALLOWED_CIDRS": "127.0.0.1/33"}))
    assert caught.value.variable == "WEBHOOK_ALLOWED_CIDRS"

    with pytest.raises(ConfigError) as caught:
        WebhookSettings.from_env(Env({"WEBHOOK_MAX_ATTEMPTS": "0"}))
    assert caught.value.variable == "WEBHOOK_MAX_ATTEMPTS"

    settings = WebhookSettings.from_env(
        Env({"WEBHOOK_ALLOWED_CIDRS": "127.0.0.1/32", "WEBHOOK_MAX_ATTEMPTS": "3"})
    )
    assert settings.delivery.max_attempts == 3
    assert settings.network.allowed_cidrs == (ipaddress.ip_network("127.0.0.1/32"),)
    assert settings.source_topic == "events-clean"
