"""Webhook delivery against real HTTP receivers on 127.0.0.1 that the tests start.

Receivers are minimal HTTP/1.1 servers on asyncio streams, so each test controls
status, headers, timing and body size exactly. The clock is a variable the tests
advance: no test waits for a retry delay to pass.
"""

from __future__ import annotations

import asyncio
import email.utils
import hashlib
import hmac
import ipaddress
import random
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import pytest

from tests.conftest import free_port
from tests.consumers.conftest import consumer_settings, make_event, open_local_broker, publish
from tracker.broker.base import TOPIC_EVENTS_CLEAN
from tracker.consumers import webhook_queue as queue
from tracker.consumers.runtime import ConsumerRuntime
from tracker.consumers.ssrf import NetworkPolicy
from tracker.consumers.webhook_delivery import DeliveryEngine, DeliveryPolicy, parse_retry_after
from tracker.consumers.webhooks import WebhookSettings, WebhookSink
from tracker.registry import webhooks as registry_webhooks
from tracker.registry.db import Registry

LOOPBACK_ONLY = NetworkPolicy(allowed_cidrs=(ipaddress.ip_network("127.0.0.1/32"),))


@dataclass
class Received:
    headers: dict[str, str]
    body: bytes


Handler = Callable[[int, Received], Awaitable[tuple[int, dict[str, str], bytes]]]


@dataclass
class Receiver:
    port: int
    requests: list[Received] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"


async def _serve(handler: Handler) -> tuple[asyncio.Server, Receiver]:
    port = free_port()
    receiver = Receiver(port)

    async def on_connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                lines = head.decode("latin-1").split("\r\n")
                headers = {}
                for line in lines[1:]:
                    if ":" in line:
                        name, _, value = line.partition(":")
                        headers[name.strip().lower()] = value.strip()
                body = await reader.readexactly(int(headers.get("content-length", "0")))
                request = Received(headers, body)
                receiver.requests.append(request)
                status, extra, payload = await handler(len(receiver.requests), request)
                response = [f"HTTP/1.1 {status} X", f"Content-Length: {len(payload)}"]
                response += [f"{name}: {value}" for name, value in extra.items()]
                writer.write(("\r\n".join(response) + "\r\n\r\n").encode() + payload)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.LimitOverrunError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(on_connection, "127.0.0.1", port)
    return server, receiver


@pytest.fixture
async def serve() -> AsyncIterator[Callable[[Handler], Awaitable[Receiver]]]:
    servers: list[asyncio.Server] = []

    async def start(handler: Handler) -> Receiver:
        server, receiver = await _serve(handler)
        servers.append(server)
        return receiver

    yield start
    for server in servers:
        server.close()


def reply(status: int, headers: dict[str, str] | None = None, body: bytes = b"ok") -> Handler:
    async def handler(_number: int, _request: Received) -> tuple[int, dict[str, str], bytes]:
        return status, headers or {}, body

    return handler


@pytest.fixture
def registry(tmp_path: Path) -> Registry:
    instance = Registry(tmp_path / "registry.db")
    for tenant in ("acme", "globex"):
        instance.connection().execute(
            "INSERT INTO tenants (key_prefix, created_at, updated_at) VALUES (?, 0, 0)", (tenant,)
        )
    return instance


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


def make_engine(registry: Registry, clock: Clock, **policy: Any) -> DeliveryEngine:
    values = {
        "max_attempts": 4,
        "timeout_seconds": 1.0,
        "backoff_base_seconds": 10.0,
        "backoff_max_seconds": 60.0,
    }
    values.update(policy)
    return DeliveryEngine(
        registry,
        policy=DeliveryPolicy(**values),
        network=LOOPBACK_ONLY,
        clock=clock,
        rng=random.Random(7),
    )


def register(
    registry: Registry, url: str, tenant: str = "acme", **options: Any
) -> registry_webhooks.CreatedEndpoint:
    return registry_webhooks.create_endpoint(
        registry, key_prefix=tenant, url=url, policy=LOOPBACK_ONLY, **options
    )


def enqueue_event(
    registry: Registry,
    created: registry_webhooks.CreatedEndpoint,
    event: dict[str, Any],
    now: float,
) -> str:
    endpoint = created.endpoint
    delivery_id = registry_webhooks.delivery_id_for(endpoint.endpoint_id, event["event_id"])
    queue.enqueue(
        registry,
        [
            queue.NewDelivery(
                delivery_id,
                endpoint.endpoint_id,
                endpoint.key_prefix,
                event["event_id"],
                orjson.dumps(event),
            )
        ],
        now,
    )
    return delivery_id


async def test_delivery_signed_body_and_headers(registry: Registry, serve: Any) -> None:
    receiver = await serve(reply(200))
    created = register(registry, receiver.url)
    clock = Clock()
    event = make_event("acme", sub1="google")
    delivery_id = enqueue_event(registry, created, event, clock.now)
    engine = make_engine(registry, clock)

    await engine.run_until_idle()

    assert len(receiver.requests) == 1
    request = receiver.requests[0]
    assert orjson.loads(request.body) == {"delivery_id": delivery_id, "event": event}
    assert request.headers["tracker-delivery-id"] == delivery_id
    assert request.headers["tracker-timestamp"] == str(int(clock.now))
    assert request.headers["host"] == f"127.0.0.1:{receiver.port}"
    expected = hmac.new(
        created.secret.encode(), f"{int(clock.now)}.".encode() + request.body, hashlib.sha256
    ).hexdigest()
    assert request.headers["tracker-signature"] == f"v1={expected}"
    stored = registry_webhooks.get_delivery(registry, delivery_id)
    assert (stored.status, stored.attempts, stored.response_code) == ("delivered", 1, 200)


async def test_delivery_retries_on_500_then_succeeds(registry: Registry, serve: Any) -> None:
    async def flapping(number: int, _request: Received) -> tuple[int, dict[str, str], bytes]:
        return (500, {}, b"down") if number < 3 else (204, {}, b"")

    receiver = await serve(flapping)
    created = register(registry, receiver.url)
    clock = Clock()
    delivery_id = enqueue_event(registry, created, make_event("acme"), clock.now)
    engine = make_engine(registry, clock)

    await engine.run_until_idle()
    first = registry_webhooks.get_delivery(registry, delivery_id)
    assert (first.status, first.attempts, first.response_code, first.last_error) == (
        "pending",
        1,
        500,
        "HTTP 500",
    )
    assert first.next_attempt_at is not None
    assert clock.now <= first.next_attempt_at <= clock.now + 11

    for _ in range(2):
        clock.now += 61
        await engine.run_until_idle()

    done = registry_webhooks.get_delivery(registry, delivery_id)
    assert (done.status, done.attempts, done.response_code) == ("delivered", 3, 204)
    assert len(receiver.requests) == 3
    assert len({request.headers["tracker-delivery-id"] for request in receiver.requests}) == 1


async def test_delivery_honours_retry_after_seconds(registry: Registry, serve: Any) -> None:
    receiver = await serve(reply(429, {"Retry-After": "120"}))
    created = register(registry, receiver.url)
    clock = Clock()
    delivery_id = enqueue_event(registry, created, make_event("acme"), clock.now)
    engine = make_engine(registry, clock, backoff_base_seconds=1.0)

    await engine.run_until_idle()
    clock.now += 100
    await engine.run_until_idle()

    stored = registry_webhooks.get_delivery(registry, delivery_id)
    assert len(receiver.requests) == 1
    assert stored.response_code == 429
    assert stored.next_attempt_at == int(clock.now - 100) + 120


async def test_delivery_caps_retry_after_date(registry: Registry, serve: Any) -> None:
    clock = Clock()
    far = email.utils.formatdate(clock.now + 86_400 * 30, usegmt=True)
    receiver = await serve(reply(503, {"Retry-After": far}))
    created = register(registry, receiver.url)
    delivery_id = enqueue_event(registry, created, make_event("acme"), clock.now)
    engine = make_engine(registry, clock, retry_after_max_seconds=300.0)

    await engine.run_until_idle()

    stored = registry_webhooks.get_delivery(registry, delivery_id)
    assert stored.next_attempt_at == int(clock.now) + 300


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("30", 30.0),
        ("0", 0.0),
        ("Thu, 01 Jan 2027 00:00:10 GMT", 10.0),
        ("soon", None),
        ("-5", None),
        ("", None),
        (None, None),
    ],
)
def test_parse_retry_after_forms(value: str | None, expected: float | None) -> None:
    now = 1_798_761_600.0  # 2027-01-01T00:00:00Z

    assert parse_retry_after(value, now) == expected


async def test_delivery_dead_after_max_attempts(registry: Registry, serve: Any) -> None:
    receiver = await serve(reply(502))
    created = register(registry, receiver.url)
    clock = Clock()
    delivery_id = enqueue_event(registry, created, make_event("acme"), clock.now)
    engine = make_engine(registry, clock, max_attempts=3)

    for _ in range(5):
        await engine.run_until_idle()
        clock.now += 61

    stored = registry_webhooks.get_delivery(registry, delivery_id)
    assert (stored.status, stored.attempts, stored.last_error) == ("dead", 3, "HTTP 502")
    assert len(receiver.requests) == 3
    dead = registry_webhooks.list_dead_letters(registry, key_prefix="acme")
    assert [d.delivery_id for d in dead] == [delivery_id]

    replayed = registry_webhooks.replay(registry, delivery_id, key_prefix="acme")
    assert (replayed.status, replayed.attempts) == ("pending", 0)


async def test_delivery_redirect_is_failure(registry: Registry, serve: Any) -> None:
    target = await serve(reply(200))
    receiver = await serve(reply(307, {"Location": target.url}))
    created = register(registry, receiver.url)
    clock = Clock()
    delivery_id = enqueue_event(registry, created, make_event("acme"), clock.now)

    await make_engine(registry, clock).run_until_idle()

    stored = registry_webhooks.get_delivery(registry, delivery_id)
    assert (stored.status, stored.response_code) == ("dead", 307)
    assert "redirects are not followed" in (stored.last_error or "")
    assert target.requests == []


async def test_delivery_client_error_is_dead_at_once(registry: Registry, serve: Any) -> None:
    receiver = await serve(reply(410))
    created = register(registry, receiver.url)
    clock = Clock()
    delivery_id = enqueue_event(registry, created, make_event("acme"), clock.now)

    await make_engine(registry, clock).run_until_idle()

    stored = registry_webhooks.get_delivery(registry, delivery_id)
    assert (stored.status, stored.attempts, stored.response_code) == ("dead", 1, 410)


async def test_delivery_huge_body_read_capped(registry: Registry, serve: Any) -> None:
    receiver = await serve(reply(200, body=b"x" * (8 * 1024 * 1024)))
    created = register(registry, receiver.url)
    clock = Clock()
    delivery_id = enqueue_event(registry, created, make_event("acme"), clock.now)

    await make_engine(registry, clock, max_response_bytes=1024).run_until_idle()

    assert registry_webhooks.get_delivery(registry, delivery_id).status == "delivered"


async def test_delivery_timeout_is_retried(registry: Registry, serve: Any) -> None:
    async def slow(_number: int, _request: Received) -> tuple[int, dict[str, str], bytes]:
        await asyncio.sleep(5)
        return 200, {}, b""

    receiver = await serve(slow)
    created = register(registry, receiver.url)
    clock = Clock()
    delivery_id = enqueue_event(registry, created, make_event("acme"), clock.now)

    await make_engine(registry, clock, timeout_seconds=0.3).run_until_idle()

    stored = registry_webhooks.get_delivery(registry, delivery_id)
    assert (stored.status, stored.attempts) == ("pending", 1)
    assert "timed out" in (stored.last_error or "")


async def test_delivery_dead_port_is_retried(registry: Registry) -> None:
    created = register(registry, f"http://127.0.0.1:{free_port()}/hook")
    clock = Clock()
    delivery_id = enqueue_event(registry, created, make_event("acme"), clock.now)

    await make_engine(registry, clock).run_until_idle()

    stored = registry_webhooks.get_delivery(registry, delivery_id)
    assert (stored.status, stored.attempts) == ("pending", 1)
    assert "connection failed" in (stored.last_error or "")


async def test_slow_endpoint_never_delays_others(registry: Registry, serve: Any) -> None:
    release = asyncio.Event()

    async def stuck(_number: int, _request: Received) -> tuple[int, dict[str, str], bytes]:
        await release.wait()
        return 200, {}, b""

    slow_receiver = await serve(stuck)
    fast_receiver = await serve(reply(200))
    slow = register(registry, slow_receiver.url)
    fast = register(registry, fast_receiver.url, tenant="globex")
    clock = Clock()
    for _ in range(20):
        enqueue_event(registry, slow, make_event("acme"), clock.now)
    fast_ids = [enqueue_event(registry, fast, make_event("globex"), clock.now) for _ in range(20)]
    engine = make_engine(registry, clock, endpoint_concurrency=2, timeout_seconds=10.0)

    def fast_delivered() -> bool:
        # The receiver gets a request before the engine records the response, so the
        # loop waits on the recorded status rather than on the request count.
        return all(
            registry_webhooks.get_delivery(registry, d).status == "delivered" for d in fast_ids
        )

    async with asyncio.timeout(10):
        while not fast_delivered():
            await engine.dispatch_due()
            await asyncio.sleep(0.01)

    assert len(fast_receiver.requests) == 20
    assert len(slow_receiver.requests) == 2
    release.set()
    await engine.drain()


async def test_engine_rejects_private_name_without_connecting(registry: Registry) -> None:
    created = registry_webhooks.create_endpoint(
        registry, key_prefix="acme", url="https://hooks.example.com/x"
    )
    resolved: list[str] = []

    async def resolver(host: str, port: int) -> list[Any]:
        resolved.append(host)
        return [ipaddress.ip_address("10.1.2.3")]

    class RefusingClient:
        async def send(self, *args: Any, **kwargs: Any) -> None:
            raise AssertionError("the guard must reject before any connection")

        def build_request(self, *args: Any, **kwargs: Any) -> None:
            raise AssertionError("the guard must reject before any request is built")

    clock = Clock()
    delivery_id = enqueue_event(registry, created, make_event("acme"), clock.now)
    engine = DeliveryEngine(
        registry,
        policy=DeliveryPolicy(),
        network=NetworkPolicy(),
        client=RefusingClient(),  # type: ignore[arg-type]
        resolver=resolver,
        clock=clock,
    )

    await engine.run_until_idle()

    stored = registry_webhooks.get_delivery(registry, delivery_id)
    assert resolved == ["hooks.example.com"]
    assert stored.status == "dead"
    assert "10.1.2.3" in (stored.last_error or "")


async def test_sink_queues_matching_events_once(data_dir: Path, serve: Any) -> None:
    receiver = await serve(reply(200))
    registry = Registry(data_dir / "registry.db")
    for tenant in ("acme", "globex"):
        registry.connection().execute(
            "INSERT INTO tenants (key_prefix, created_at, updated_at) VALUES (?, 0, 0)", (tenant,)
        )
    clicks = register(
        registry, receiver.url, event_types=["click"], param_filters={"sub1": "google"}
    )
    register(registry, receiver.url, tenant="globex")
    broker = await open_local_broker(data_dir)
    matching = make_event("acme", sub1="google")
    events = [
        matching,
        make_event("acme", "postback", sub1="google"),
        make_event("acme", sub1="bing"),
        make_event("globex"),
        make_event("initech"),
    ]
    try:
        await publish(broker, TOPIC_EVENTS_CLEAN, events)
        await publish(broker, TOPIC_EVENTS_CLEAN, [matching])
        settings = WebhookSettings(
            network=LOOPBACK_ONLY, delivery=DeliveryPolicy(poll_seconds=0.05)
        )
        sink = WebhookSink(settings)
        runtime = ConsumerRuntime(
            sink, broker, consumer_settings(data_dir), registry_factory=lambda: registry
        )
        task = asyncio.create_task(runtime.run())
        async with asyncio.timeout(15):
            while len(receiver.requests) < 2:
                await asyncio.sleep(0.05)
            await asyncio.sleep(0.3)
        runtime.request_stop()
        await asyncio.wait_for(task, 15)
    finally:
        await broker.close()

    delivered_events = sorted(orjson.loads(r.body)["event"]["event_id"] for r in receiver.requests)
    assert delivered_events == sorted([matching["event_id"], events[3]["event_id"]])
    acme = registry_webhooks.list_deliveries(registry, endpoint_id=clicks.endpoint.endpoint_id)
    assert [(d.event_id, d.status) for d in acme] == [(matching["event_id"], "delivered")]
