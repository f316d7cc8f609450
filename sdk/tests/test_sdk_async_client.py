"""AsyncTrackerClient against a scripted local HTTP server standing in for the ingest service."""

from __future__ import annotations

import asyncio
import random
import subprocess
import sys
import textwrap

import pytest
from conftest import Reply, ScriptedServer
from tracker_sdk import AsyncTrackerClient, DeliveryError, InvalidEventError, RetryPolicy


class AsyncRecordingSleep:
    """Stands in for asyncio.sleep in retry tests: records each delay and returns at once."""

    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)


def make_client(server: ScriptedServer, sleep=None, **options) -> AsyncTrackerClient:
    options.setdefault("flush_interval", 30.0)
    options.setdefault("retry", RetryPolicy(max_retries=3))
    if sleep is not None:
        options["sleep"] = sleep
    return AsyncTrackerClient(server.url, "acme1", rng=random.Random(3), **options)


async def test_async_client_batches_and_closes(server):
    async with make_client(server, batch_size=4) as client:
        ids = [await client.track("view", {"n": str(n)}) for n in range(10)]

    batches = server.batch_event_lists()
    assert [len(batch) for batch in batches] == [4, 4, 2]
    assert [event["event_id"] for batch in batches for event in batch] == ids
    assert client.stats.delivered == 10


async def test_async_client_flushes_on_interval(server):
    client = make_client(server, batch_size=100, flush_interval=0.05)
    await client.track("view")
    await asyncio.to_thread(server.wait_for_requests, 1, 5)
    await client.aclose()
    assert client.stats.delivered == 1


async def test_async_client_retries_429_then_delivers(server):
    sleep = AsyncRecordingSleep()
    server.script = [Reply(429, None, {"Retry-After": "3"}), Reply(500)]
    async with make_client(server, sleep, batch_size=1) as client:
        await client.track("a")

    batches = server.batch_event_lists()
    assert len(batches) == 3
    assert len({batch[0]["event_id"] for batch in batches}) == 1
    assert sleep.delays[0] == 3.0
    assert 0.0 <= sleep.delays[1] <= 1.0
    assert client.stats.delivered == 1


async def test_async_client_counts_rejections(server):
    server.script = [
        Reply(
            200,
            {"accepted": 0, "rejected": [{"index": 0, "field": "event_type", "reason": "invalid"}]},
        )
    ]
    async with make_client(server, batch_size=1) as client:
        await client.track("a")

    assert client.stats.rejected == 1
    assert len(server.requests) == 1


async def test_async_client_block_overflow(server):
    server.gate.clear()
    client = make_client(server, batch_size=1, max_buffer=1, overflow="block")
    await client.track("held")
    await asyncio.to_thread(server.wait_for_requests, 1)
    await client.track("queued")

    late = asyncio.create_task(client.track("late"))
    await asyncio.sleep(0.2)
    assert not late.done()

    server.gate.set()
    assert await asyncio.wait_for(late, 10) is not None
    await client.aclose()
    assert client.stats.delivered == 3
    assert client.stats.dropped_overflow == 0


async def test_async_client_drop_oldest(server):
    server.gate.clear()
    client = make_client(server, batch_size=1, max_buffer=2)
    await client.track("held", {"n": "0"})
    await asyncio.to_thread(server.wait_for_requests, 1)
    for n in range(1, 6):
        await client.track("queued", {"n": str(n)})

    server.gate.set()
    await client.aclose()
    sent = [batch[0]["params"]["n"] for batch in server.batch_event_lists()]
    assert sent == ["0", "4", "5"]
    assert client.stats.dropped_overflow == 3


async def test_async_client_invalid_event_raises(server):
    client = make_client(server, raise_errors=True)
    with pytest.raises(InvalidEventError):
        await client.track("no spaces allowed")
    await client.aclose()


async def test_async_client_flush_raises_on_failure(server):
    server.default = lambda request: Reply(403, {"error": {"code": "forbidden"}})
    client = make_client(server, raise_errors=True)
    await client.track("a")
    with pytest.raises(DeliveryError):
        await client.flush()
    await client.aclose()


def test_async_client_drains_at_exit(server):
    script = textwrap.dedent(f"""
        import asyncio
        from tracker_sdk import AsyncTrackerClient

        async def main():
            client = AsyncTrackerClient({server.url!r}, "acme1", flush_interval=60)
            for n in range(3):
                await client.track("exit_test", {{"n": str(n)}})

        asyncio.run(main())
    """)
    subprocess.run([sys.executable, "-c", script], check=True, timeout=30)

    sent = [event["params"]["n"] for batch in server.batch_event_lists() for event in batch]
    assert sent == ["0", "1", "2"]
