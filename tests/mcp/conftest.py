"""One `tracker up` platform for the MCP tests, plus helpers that talk to it directly and through MCP."""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import os
import sys
import threading
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from mcp import Client, StdioServerParameters
from mcp_types import CallToolResult

from tests.platform_up import run_up, wait_until

# Generous because a loaded CI machine takes tens of seconds to start a Python process.
CALL_TIMEOUT_SECONDS = 120


@dataclass(frozen=True)
class RunningPlatform:
    """Where the test platform listens and the demo tenant's credentials."""

    ingest_url: str
    api_url: str
    sse_url: str
    demo: dict[str, Any]

    @property
    def api_key(self) -> str:
        return self.demo["api_key"]

    def api(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """Call the API directly with the demo tenant's key."""
        headers = {"Authorization": f"Bearer {self.api_key}"}
        return httpx.request(method, f"{self.api_url}{path}", headers=headers, timeout=10, **kwargs)

    def mcp_env(self, **overrides: str) -> dict[str, str]:
        """Environment of a `tracker mcp` process pointed at this platform with the demo key and secrets."""
        env = {
            "TRACKER_API_URL": self.api_url,
            "TRACKER_INGEST_URL": self.ingest_url,
            "TRACKER_SSE_URL": self.sse_url,
            "TRACKER_API_KEY": self.api_key,
            "TRACKER_HMAC_SECRET": self.demo["hmac_secret_hex"],
            "TRACKER_AES_KEY": self.demo["aes_key_hex"],
            "TRACKER_AES_KEY_ID": str(self.demo["aes_key_id"]),
            "TRACKER_ADMIN_API_KEY": self.demo["admin_api_key"],
            # An empty .env path keeps a developer's .env out of the tests.
            "TRACKER_ENV_FILE": os.devnull,
            "PYTHONPATH": os.getcwd(),
        }
        env.update(overrides)
        return env


@pytest.fixture(scope="session")
def platform(tmp_path_factory: pytest.TempPathFactory):
    """Start `tracker up` on free ports once; stop it with SIGTERM at the end."""
    data_dir = tmp_path_factory.mktemp("mcp-up") / "data"
    # Webhook tests register loopback endpoints whose filters match no event.
    with run_up(data_dir, env={"WEBHOOK_ALLOW_PRIVATE_NETWORKS": "true"}) as up:
        running = RunningPlatform(
            ingest_url=up.ingest_url, api_url=up.api_url, sse_url=up.sse_url, demo=up.demo
        )
        wait_until(lambda: _api_ready(running), 30, "the API to answer GET /api/keys")
        yield running


def _api_ready(running: RunningPlatform) -> bool:
    try:
        return running.api("GET", "/api/keys").status_code == 200
    except httpx.HTTPError:
        return False


@asynccontextmanager
async def stdio_client(env: dict[str, str]) -> AsyncIterator[Client]:
    """Spawn `tracker mcp` over stdio with `env` and yield a connected SDK client."""
    parameters = StdioServerParameters(
        command=sys.executable, args=["-m", "tracker.cli.main", "mcp"], env=env
    )
    async with Client(parameters, read_timeout_seconds=CALL_TIMEOUT_SECONDS) as client:
        yield client


class McpSession:
    """One connected MCP client on an event loop in a background thread, driven by sync tests.

    Starting `tracker mcp` costs seconds on a busy machine, so the tests share one
    process per transport instead of spawning one per test.
    """

    def __init__(self, connect: Callable[[], AbstractAsyncContextManager[Client]]) -> None:
        self._connect = connect
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._client: Client | None = None
        self._stop: asyncio.Event | None = None
        self._done: concurrent.futures.Future[None] | None = None

    def __enter__(self) -> McpSession:
        self._thread.start()
        ready: concurrent.futures.Future[None] = concurrent.futures.Future()
        self._done = asyncio.run_coroutine_threadsafe(self._hold(ready), self._loop)
        ready.result(timeout=CALL_TIMEOUT_SECONDS * 2)
        return self

    def __exit__(self, *exc_info: object) -> None:
        assert self._stop is not None and self._done is not None
        self._loop.call_soon_threadsafe(self._stop.set)
        self._done.result(timeout=CALL_TIMEOUT_SECONDS)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=CALL_TIMEOUT_SECONDS)

    async def _hold(self, ready: concurrent.futures.Future[None]) -> None:
        self._stop = asyncio.Event()
        try:
            async with self._connect() as client:
                self._client = client
                ready.set_result(None)
                await self._stop.wait()
        except BaseException as error:
            if not ready.done():
                ready.set_exception(error)
            raise

    def run(self, coroutine_factory: Callable[[Client], Any]) -> Any:
        """Run `coroutine_factory(client)` on the session's loop and return its result."""
        assert self._client is not None
        future = asyncio.run_coroutine_threadsafe(coroutine_factory(self._client), self._loop)
        return future.result(timeout=CALL_TIMEOUT_SECONDS * 2)

    def list_tools(self) -> list[Any]:
        return self.run(lambda client: client.list_tools()).tools

    def call(self, name: str, arguments: dict[str, Any] | None = None) -> CallToolResult:
        return self.run(lambda client: client.call_tool(name, arguments or {}))


@pytest.fixture(scope="session")
def mcp_stdio(platform: RunningPlatform):
    """`tracker mcp` over stdio with the demo tenant's key and secrets in its environment."""
    with McpSession(lambda: stdio_client(platform.mcp_env())) as session:
        yield session


def result_json(result: CallToolResult) -> dict[str, Any]:
    """Return the JSON object of a successful tool result; fail with its text otherwise."""
    text = result.content[0].text
    assert not result.is_error, text
    return json.loads(text)


def error_json(result: CallToolResult) -> dict[str, Any]:
    """Return the `error` object of a failed tool result."""
    assert result.is_error, f"expected a tool error, got {result.content[0].text[:300]}"
    text = result.content[0].text
    return json.loads(text[text.index("{") :])["error"]
