"""SSE hub fan-out, filters, overflow and Last-Event-ID parsing, in process."""

from __future__ import annotations

import asyncio

import orjson
import pytest

from tracker.sse.hub import EventFilter, Hub, LiveEvent, TooManyConnections
from tracker.sse.tailer import parse_last_event_id


def live(
    tenant: str, offset: int = 0, index: int = 0, event_type: str = "click", **params: str
) -> LiveEvent:
    event = {
        "event_id": f"{tenant}-{offset}-{index}",
        "event_type": event_type,
        "params": {"key_prefix": tenant, **params},
    }
    return LiveEvent(2, offset, index, event, orjson.dumps(event))


def drain(queue: asyncio.Queue[str]) -> list[str]:
    items = []
    while not queue.empty():
        items.append(queue.get_nowait())
    return items


async def test_hub_isolates_tenants() -> None:
    hub = Hub(client_buffer=10, max_connections_per_tenant=5)
    acme = hub.subscribe("acme", EventFilter())
    globex = hub.subscribe("globex", EventFilter())

    hub.publish([live("acme", 1), live("globex", 2), live("initech", 3)])

    acme_items = drain(acme.queue)
    assert len(acme_items) == 1
    assert acme_items[0].startswith("id: 2-1-0\ndata: ")
    assert '"acme-1-0"' in acme_items[0]
    assert all("acme" not in item for item in drain(globex.queue))


async def test_hub_applies_filters() -> None:
    hub = Hub(client_buffer=10, max_connections_per_tenant=5)
    clicks = hub.subscribe("acme", EventFilter(event_type="click"))
    google = hub.subscribe("acme", EventFilter(param_key="sub1", param_value="google"))
    has_sub1 = hub.subscribe("acme", EventFilter(param_key="sub1"))

    hub.publish(
        [
            live("acme", 1, sub1="google"),
            live("acme", 2, event_type="postback", sub1="bing"),
            live("acme", 3),
        ]
    )

    assert len(drain(clicks.queue)) == 2
    assert len(drain(google.queue)) == 1
    assert len(drain(has_sub1.queue)) == 2


async def test_hub_overflow_drops_slow_client_only() -> None:
    hub = Hub(client_buffer=3, max_connections_per_tenant=5)
    slow = hub.subscribe("acme", EventFilter())
    fast = hub.subscribe("acme", EventFilter())

    for offset in range(3):
        hub.publish([live("acme", offset)])
        drain(fast.queue)
    hub.publish([live("acme", 3)])

    assert slow.overflowed
    assert drain(slow.queue) == [""]
    assert not fast.overflowed
    assert len(drain(fast.queue)) == 1
    assert hub.connection_count("acme") == 1
    assert hub.overflows == 1


async def test_hub_limits_connections_per_tenant() -> None:
    hub = Hub(client_buffer=3, max_connections_per_tenant=2)
    first = hub.subscribe("acme", EventFilter())
    hub.subscribe("acme", EventFilter())

    with pytest.raises(TooManyConnections):
        hub.subscribe("acme", EventFilter())
    hub.subscribe("globex", EventFilter())
    hub.unsubscribe(first)
    hub.subscribe("acme", EventFilter())
    assert hub.connection_count() == 3


async def test_subscription_records_positions() -> None:
    hub = Hub(client_buffer=3, max_connections_per_tenant=2)
    hub.positions.update({0: 5, 1: 9})

    subscription = hub.subscribe("acme", EventFilter())
    hub.positions[0] = 6

    assert subscription.start_positions == {0: 5, 1: 9}


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("3-120-7", (3, 120, 7)),
        (" 0-0-0 ", (0, 0, 0)),
        ("4-1-0", None),
        ("3-120", None),
        ("a-b-c", None),
        ("3--1-0", None),
        ("3-" + "9" * 30 + "-0", None),
        ("", None),
        (None, None),
    ],
)
def test_parse_last_event_id(value: str | None, expected: tuple[int, int, int] | None) -> None:
    assert parse_last_event_id(value, 4) == expected
