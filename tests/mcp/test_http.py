"""`tracker mcp --http` serves the tools over streamable HTTP and passes the client's bearer key through."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from contextlib import asynccontextmanager

import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client

from tests.conftest import free_port
from tests.mcp.conftest import McpSession, error_json, result_json, wait_until


def _listening(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0


@pytest.fixture(scope="module")
def mcp_http_url(platform):
    """Start `tracker mcp --http` without a configured key, so every call must bring its own."""
    port = free_port()
    env = {**os.environ, **platform.mcp_env()}
    for name in (
        "TRACKER_API_KEY",
        "TRACKER_HMAC_SECRET",
        "TRACKER_AES_KEY",
        "TRACKER_ADMIN_API_KEY",
    ):
        env.pop(name)
    process = subprocess.Popen(
        [sys.executable, "-m", "tracker.cli.main", "mcp", "--http", "--port", str(port)],
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_until(
            lambda: process.poll() is not None or _listening(port),
            120,
            "tracker mcp --http to listen",
        )
        assert process.poll() is None, "tracker mcp --http exited"
        yield f"http://127.0.0.1:{port}/mcp"
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _session(url: str, headers: dict[str, str]) -> McpSession:
    @asynccontextmanager
    async def connect():
        async with (
            create_mcp_http_client(headers=headers) as http,
            Client(streamable_http_client(url, http_client=http)) as client,
        ):
            yield client

    return McpSession(connect)


def test_http_uses_bearer_key(mcp_http_url, platform):
    with _session(mcp_http_url, {"Authorization": f"Bearer {platform.api_key}"}) as session:
        tools = session.list_tools()
        listed = result_json(session.call("list_tracking_urls"))

    assert len(tools) == 26
    from_api = platform.api("GET", "/api/tracking-urls").json()["tracking_urls"]
    assert [link["tu_id"] for link in listed["tracking_urls"]] == [
        link["tu_id"] for link in from_api
    ]


def test_http_without_key_is_rejected(mcp_http_url):
    with _session(mcp_http_url, {}) as session:
        missing = error_json(session.call("list_webhooks"))

    assert missing["code"] == "missing_api_key"


def test_http_bad_bearer_gets_api_reason(mcp_http_url):
    with _session(
        mcp_http_url, {"Authorization": "Bearer trk_000000000000_" + "A" * 43}
    ) as session:
        unknown = error_json(session.call("list_webhooks"))
    with _session(mcp_http_url, {"Authorization": "Basic dXNlcjpwYXNz"}) as session:
        malformed = error_json(session.call("list_webhooks"))

    assert unknown["status"] == 401
    assert malformed["code"] == "invalid_authorization"


def test_http_signs_through_api_or_names_secret(mcp_http_url, platform):
    """Without local secrets the server calls POST /api/tracking-urls/sign, when the API has it."""
    has_sign_route = (
        "/api/tracking-urls/sign" in platform.api("GET", "/api/openapi.json").json()["paths"]
    )

    with _session(mcp_http_url, {"Authorization": f"Bearer {platform.api_key}"}) as session:
        result = session.call("build_signed_click_url", {"destination": "https://example.com/h"})
        hidden = error_json(
            session.call(
                "build_encrypted_click_url",
                {"destination": "https://example.com/h", "hidden_params": {"a": "1"}},
            )
        )

    assert hidden["code"] == "secret_not_configured"
    if has_sign_route:
        assert result_json(result)["source"] == "api"
    else:
        assert error_json(result)["status"] == 404
