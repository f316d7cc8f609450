"""SSE gateway with a real browser EventSource, and resource use over many reconnects."""

from __future__ import annotations

import asyncio
import http.server
import os
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import psutil
import pytest

from tests.conftest import free_port
from tests.sse.conftest import Gateway, make_event, publish, start_gateway, stop_gateway

PAGE = """<!doctype html>
<html><body><script>
window.received = [];
window.errors = 0;
const source = new EventSource(STREAM_URL);
source.onmessage = (message) => window.received.push({id: message.lastEventId, data: JSON.parse(message.data)});
source.onerror = () => { window.errors += 1; };
</script></body></html>
"""


@pytest.fixture
def page_server(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """A static file server on 127.0.0.1 that serves the test page's directory."""
    root = tmp_path / "site"
    root.mkdir()
    port = free_port()
    handler = lambda *args: http.server.SimpleHTTPRequestHandler(*args, directory=str(root))  # noqa: E731
    server = http.server.ThreadingHTTPServer(("127.0.0.1", port), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{port}", root
    server.shutdown()
    server.server_close()


@pytest.mark.browser
async def test_browser_eventsource_receives_events(
    data_dir: Path, page_server: tuple[str, Path]
) -> None:
    from playwright.async_api import async_playwright

    origin, root = page_server
    gateway = start_gateway(data_dir, SSE_ALLOWED_ORIGINS=origin)
    try:
        stream_url = f"{gateway.url}/events/stream?key={gateway.keys['acme']}&event_type=click"
        (root / "index.html").write_text(PAGE.replace("STREAM_URL", repr(stream_url)))
        async with async_playwright() as playwright:
            browser = await playwright.chromium.launch(
                executable_path="/usr/bin/chromium",
                args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"],
            )
            try:
                page = await browser.new_page()
                await page.goto(f"{origin}/index.html")
                async with asyncio.timeout(10):
                    while (await httpx.AsyncClient().get(f"{gateway.url}/health")).json()[
                        "connections"
                    ] < 1:
                        await asyncio.sleep(0.05)
                wanted = [make_event("acme", n=str(i)) for i in range(3)]
                await publish(
                    data_dir, [make_event("globex"), make_event("acme", "postback"), *wanted]
                )

                await page.wait_for_function("window.received.length >= 3", timeout=10_000)
                received = await page.evaluate("window.received")
            finally:
                await browser.close()
    finally:
        stop_gateway(gateway)

    assert [item["data"]["event_id"] for item in received] == [
        event["event_id"] for event in wanted
    ]
    assert all(item["id"].count("-") == 2 for item in received)


def _resources(pid: int) -> tuple[int, int]:
    process = psutil.Process(pid)
    return len(os.listdir(f"/proc/{pid}/fd")), process.memory_info().rss


@pytest.mark.slow
async def test_thousand_reconnects_release_resources(data_dir: Path) -> None:
    # A closed stream is noticed at the next write, so slots free up one heartbeat later.
    gateway = start_gateway(
        data_dir, SSE_MAX_CONNECTIONS_PER_TENANT="2000", SSE_HEARTBEAT_SECONDS="0.2"
    )
    try:
        await _cycle_thousand_times(gateway)
    finally:
        stop_gateway(gateway)


async def _cycle_thousand_times(gateway: Gateway) -> None:
    pid = gateway.process.pid
    headers = {"Authorization": f"Bearer {gateway.keys['acme']}"}
    url = f"{gateway.url}/events/stream"

    async def cycle(client: httpx.AsyncClient) -> None:
        async with client.stream("GET", url, headers=headers) as response:
            assert response.status_code == 200
            async for _chunk in response.aiter_text():
                break

    async with httpx.AsyncClient(
        timeout=10, limits=httpx.Limits(max_keepalive_connections=0)
    ) as client:
        for _ in range(50):
            await cycle(client)
        await asyncio.sleep(1.5)
        fds_before, rss_before = _resources(pid)

        for _ in range(1000):
            await cycle(client)
        # Disconnects are noticed at the next write: the 0.5 s heartbeat.
        async with asyncio.timeout(10):
            while (await client.get(f"{gateway.url}/health")).json()["connections"] > 0:
                await asyncio.sleep(0.1)
        await asyncio.sleep(1.0)
        fds_after, rss_after = _resources(pid)

    assert fds_after <= fds_before + 5
    assert rss_after <= rss_before + 20 * 1024 * 1024
