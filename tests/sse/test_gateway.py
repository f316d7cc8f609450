"""SSE gateway over real HTTP: auth, tenant isolation, filters, resume, limits, overflow."""

from __future__ import annotations

import asyncio
import socket
from typing import Any

import httpx
import orjson
import pytest

from tests.sse.conftest import Gateway, make_event, publish, start_gateway, stop_gateway


async def read_messages(
    response: httpx.Response,
    count: int,
    timeout: float = 10.0,
    into: list[dict[str, str]] | None = None,
) -> list[dict[str, str]]:
    """Parse SSE messages (comments skipped) until `count` messages with data arrived."""
    messages: list[dict[str, str]] = into if into is not None else []
    current: dict[str, str] = {}
    async with asyncio.timeout(timeout):
        async for line in response.aiter_lines():
            if line == "":
                if "data" in current:
                    messages.append(current)
                    if len(messages) >= count:
                        return messages
                current = {}
                continue
            if line.startswith(":"):
                continue
            name, _, value = line.partition(":")
            current[name] = value[1:] if value.startswith(" ") else value
    return messages


def stream_url(gateway: Gateway, tenant: str = "acme", **query: str) -> str:
    return f"{gateway.url}/events/stream"


async def open_stream(
    client: httpx.AsyncClient, gateway: Gateway, tenant: str = "acme", **query: str
) -> Any:
    headers = {"Authorization": f"Bearer {gateway.keys[tenant]}"}
    return client.stream("GET", f"{gateway.url}/events/stream", params=query, headers=headers)


async def wait_connected(gateway: Gateway, count: int) -> None:
    async with httpx.AsyncClient() as client:
        async with asyncio.timeout(10):
            while (await client.get(f"{gateway.url}/health")).json()["connections"] < count:
                await asyncio.sleep(0.05)


async def test_stream_delivers_own_tenant_only(gateway: Gateway) -> None:
    async with httpx.AsyncClient(timeout=10) as client:  # noqa: SIM117 (the stream needs the client open)
        async with await open_stream(client, gateway, "acme") as response:
            assert response.status_code == 200
            assert response.headers["content-type"].startswith("text/event-stream")
            await wait_connected(gateway, 1)
            mine = [make_event("acme", n=str(i)) for i in range(3)]
            await publish(gateway.data_dir, [make_event("globex"), *mine, make_event("globex")])

            messages = await read_messages(response, 3)

    assert [orjson.loads(m["data"])["event_id"] for m in messages] == [e["event_id"] for e in mine]
    partitions = {m["id"].split("-")[0] for m in messages}
    assert len(partitions) == 1
    assert [m["id"].split("-")[2] for m in messages] == ["0", "1", "2"]


async def test_stream_key_in_query_and_filters(gateway: Gateway) -> None:
    params = {
        "key": gateway.keys["acme"],
        "event_type": "postback",
        "param_key": "sub1",
        "param_value": "google",
    }
    async with httpx.AsyncClient(timeout=10) as client:  # noqa: SIM117 (the stream needs the client open)
        async with client.stream("GET", f"{gateway.url}/events/stream", params=params) as response:
            assert response.status_code == 200
            await wait_connected(gateway, 1)
            wanted = make_event("acme", "postback", sub1="google")
            await publish(
                gateway.data_dir,
                [
                    make_event("acme", sub1="google"),
                    make_event("acme", "postback", sub1="bing"),
                    wanted,
                ],
            )

            messages = await read_messages(response, 1)

    assert orjson.loads(messages[0]["data"])["event_id"] == wanted["event_id"]


@pytest.mark.parametrize(
    ("headers", "params", "status", "code"),
    [
        ({}, {}, 401, "api_key_missing"),
        ({"Authorization": "Bearer trk_nothex"}, {}, 401, "api_key_malformed"),
        ({}, {"key": "trk_000000000000_" + "A" * 43}, 401, "api_key_unknown"),
        ({}, {"param_value": "x"}, 400, "invalid_parameter"),
        ({}, {"event_type": "x" * 3000}, 400, "invalid_parameter"),
        ({"Last-Event-ID": "garbage"}, {}, 400, "invalid_parameter"),
    ],
)
async def test_stream_rejects_bad_requests(
    gateway: Gateway, headers: dict[str, str], params: dict[str, str], status: int, code: str
) -> None:
    if status == 400:
        headers = {"Authorization": f"Bearer {gateway.keys['acme']}", **headers}

    async with httpx.AsyncClient(timeout=10) as client:
        response = await client.get(f"{gateway.url}/events/stream", headers=headers, params=params)

    assert response.status_code == status
    assert response.json()["error"]["code"] == code


async def test_admin_key_needs_tenant(gateway: Gateway) -> None:
    headers = {"Authorization": f"Bearer {gateway.admin_key}"}
    async with httpx.AsyncClient(timeout=10) as client:
        response = await client.get(f"{gateway.url}/events/stream", headers=headers)
        assert response.status_code == 400
        assert response.json()["error"]["field"] == "key_prefix"

        async with client.stream(
            "GET", f"{gateway.url}/events/stream", headers=headers, params={"key_prefix": "globex"}
        ) as stream:
            assert stream.status_code == 200
            await wait_connected(gateway, 1)
            wanted = make_event("globex")
            await publish(gateway.data_dir, [make_event("acme"), wanted])
            messages = await read_messages(stream, 1)

    assert orjson.loads(messages[0]["data"])["event_id"] == wanted["event_id"]


async def test_last_event_id_resumes_without_gap(gateway: Gateway) -> None:
    first = [make_event("acme", n=str(i)) for i in range(5)]
    missed = [make_event("acme", n=str(i)) for i in range(5, 12)]
    later = [make_event("acme", n=str(i)) for i in range(12, 15)]
    async with httpx.AsyncClient(timeout=10) as client:
        async with await open_stream(client, gateway) as response:
            await wait_connected(gateway, 1)
            await publish(gateway.data_dir, first, per_message=2)
            received = await read_messages(response, 5)
        last_id = received[-1]["id"]
        await publish(gateway.data_dir, missed, per_message=3)

        headers = {"Authorization": f"Bearer {gateway.keys['acme']}", "Last-Event-ID": last_id}
        async with client.stream(
            "GET", f"{gateway.url}/events/stream", headers=headers
        ) as response:
            await wait_connected(gateway, 1)
            await publish(gateway.data_dir, [make_event("globex"), *later])
            resumed = await read_messages(response, len(missed) + len(later))

    ids = [orjson.loads(m["data"])["event_id"] for m in resumed]
    assert ids == [e["event_id"] for e in missed + later]


async def test_connection_limit_per_tenant(data_dir: Any) -> None:
    gateway = start_gateway(data_dir, SSE_MAX_CONNECTIONS_PER_TENANT="2")
    try:
        async with (
            httpx.AsyncClient(timeout=10) as client,
            await open_stream(client, gateway) as one,
            await open_stream(client, gateway) as two,
        ):
            assert (one.status_code, two.status_code) == (200, 200)
            await wait_connected(gateway, 2)
            rejected = await client.get(
                f"{gateway.url}/events/stream",
                headers={"Authorization": f"Bearer {gateway.keys['acme']}"},
            )
            assert rejected.status_code == 429
            assert rejected.json()["error"]["code"] == "too_many_connections"
            async with await open_stream(client, gateway, "globex") as other:
                assert other.status_code == 200
    finally:
        stop_gateway(gateway)


@pytest.mark.slow
async def test_slow_client_is_disconnected(data_dir: Any) -> None:
    gateway = start_gateway(data_dir, SSE_CLIENT_BUFFER="200")
    try:
        # A raw socket with a tiny receive buffer that stops reading after the headers.
        slow = socket.create_connection(("127.0.0.1", int(gateway.url.rsplit(":", 1)[1])))
        slow.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        slow.sendall(
            f"GET /events/stream?key={gateway.keys['acme']} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode()
        )
        async with httpx.AsyncClient(timeout=10) as client:  # noqa: SIM117 (the stream needs the client open)
            async with await open_stream(client, gateway, "acme") as fast:
                await wait_connected(gateway, 2)
                received_fast: list[dict[str, str]] = []

                async def read_fast() -> None:
                    await read_messages(fast, 1_000_000, timeout=60, into=received_fast)

                reader = asyncio.create_task(read_fast())
                padding = "p" * 1500
                total = 0
                for _ in range(20):
                    await publish(
                        gateway.data_dir,
                        [make_event("acme", pad=padding) for _ in range(500)],
                        per_message=10,
                    )
                    total += 500
                    await asyncio.sleep(0.2)
                    health = (await client.get(f"{gateway.url}/health")).json()
                    if health["overflows"] >= 1:
                        break
                assert health["overflows"] == 1
                assert health["connections"] == 1
                # The fast client still receives everything that was published.
                async with asyncio.timeout(30):
                    while len(received_fast) < total and not reader.done():
                        await asyncio.sleep(0.05)
                reader.cancel()
                assert len(received_fast) == total

        # Reading the notice through a 4 KB receive window would take minutes;
        # test_overflow_notice_ends_stream checks the notice itself.
        slow.close()
    finally:
        stop_gateway(gateway)


async def test_overflow_notice_ends_stream() -> None:
    from tracker.sse.app import SseGateway
    from tracker.sse.hub import EventFilter, LiveEvent
    from tracker.sse.settings import SseSettings

    class Partitions:
        partitions = 4

    gateway = SseGateway(SseSettings(client_buffer=2, heartbeat_seconds=5), Partitions(), None)  # type: ignore[arg-type]
    subscription = gateway.hub.subscribe("acme", EventFilter())
    stream = gateway._messages(subscription, None)
    assert (await anext(stream)).startswith("retry: 2000\n")

    event = make_event("acme")
    for offset in range(3):
        gateway.hub.publish([LiveEvent(0, offset, 0, event, orjson.dumps(event))])

    assert await anext(stream) == 'event: overflow\ndata: {"reason":"client_too_slow"}\n\n'
    with pytest.raises(StopAsyncIteration):
        await anext(stream)
    assert gateway.hub.connection_count() == 0


async def test_unmatched_requests_get_json_errors(gateway: Gateway) -> None:
    async with httpx.AsyncClient(timeout=10) as client:
        missing = await client.get(f"{gateway.url}/events/nothing")
        wrong_method = await client.post(f"{gateway.url}/events/stream")

    assert missing.status_code == 404
    assert missing.json()["error"]["code"] == "not_found"
    assert wrong_method.status_code == 405
    assert wrong_method.headers["allow"] == "GET"
    assert wrong_method.json()["error"]["code"] == "method_not_allowed"
