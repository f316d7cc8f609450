"""Every tool reports bad arguments, bad keys and a dead API as a tool error, never a crash."""

from __future__ import annotations

import asyncio

from mcp import Client

from tests.conftest import free_port
from tests.mcp.conftest import McpSession, error_json, stdio_client
from tracker.mcp.server import build_server
from tracker.mcp.settings import McpSettings
from tracker.settings import Env

LONG = "x" * 5000

# One invalid call per tool that takes arguments: a wrong type, a value out of range or a
# malformed id. The SDK ignores unknown arguments, so tools without arguments are checked
# with an unknown key (below) and, for health, with services that are down.
INVALID_CALLS = [
    ("build_encrypted_click_url", {"destination": "javascript:alert(1)"}),
    ("build_impression_url", {"params": {"creative": 5}}),
    ("build_postback_url", {"sign": "maybe"}),
    ("build_short_url", {"tu_id": "../../etc"}),
    ("build_signed_click_url", {"destination": LONG}),
    ("create_tracking_url", {"destination": "not a url"}),
    ("create_webhook", {"url": "https://example.com/h", "event_types": ["bad type!"]}),
    ("delete_webhook", {"endpoint_id": "a/b", "confirm": True}),
    ("disable_tracking_url", {"tu_id": ""}),
    ("enable_tracking_url", {}),
    ("get_event_stats", {"group_by": ["weekday"]}),
    ("get_recent_events", {"limit": 101}),
    ("get_tracking_url", {"tu_id": LONG}),
    ("get_tracking_url_stats", {"tu_id": "a b"}),
    ("get_webhook", {"endpoint_id": None}),
    ("list_webhook_dead_letters", {"limit": 0}),
    ("list_webhook_deliveries", {"endpoint_id": "e1", "status": "lost"}),
    ("match_events", {"on": "click_id"}),
    ("replay_webhook_delivery", {"delivery_id": "x" * 65}),
    ("rotate_tracking_url", {"tu_id": "abc", "destination": "ftp://example.com", "confirm": True}),
    ("search_events", {"limit": 1001}),
]


def test_invalid_arguments_are_tool_errors(mcp_stdio, platform):
    assert len({name for name, _ in INVALID_CALLS}) == 21
    link_count = len(platform.api("GET", "/api/tracking-urls").json()["tracking_urls"])

    for name, arguments in INVALID_CALLS:
        result = mcp_stdio.call(name, arguments)
        assert result.is_error, (name, result.content[0].text[:200])
        assert "Traceback" not in result.content[0].text, name

    assert len(platform.api("GET", "/api/tracking-urls").json()["tracking_urls"]) == link_count


def test_api_validation_reason_passes_through(mcp_stdio):
    error = error_json(mcp_stdio.call("get_event_stats", {"from_time": "yesterday"}))

    assert error["status"] == 400
    assert error["code"] == "invalid_time"
    assert error["field"] == "from"


def test_unknown_tool_is_error(mcp_stdio):
    result = mcp_stdio.call("drop_all_tables", {})
    assert result.is_error


def test_revoked_key_gets_401(platform):
    env = platform.mcp_env(TRACKER_API_KEY="trk_000000000000_" + "A" * 43)
    with McpSession(lambda: stdio_client(env)) as session:
        errors = {
            name: error_json(session.call(name))
            for name in ("get_tenant", "list_api_keys", "list_tracking_urls", "list_webhooks")
        }

    for name, error in errors.items():
        assert error["status"] == 401, name
        assert error["code"], name


def test_missing_key_is_named():
    settings = McpSettings.from_env(Env({"TRACKER_API_URL": f"http://127.0.0.1:{free_port()}"}))

    async def call() -> object:
        async with Client(build_server(settings)) as client:
            return await client.call_tool("list_webhooks", {})

    error = error_json(asyncio.run(call()))
    assert error["code"] == "missing_api_key"
    assert "TRACKER_API_KEY" in error["message"]


def test_unreachable_api_is_error():
    port = free_port()
    settings = McpSettings.from_env(
        Env(
            {
                "TRACKER_API_URL": f"http://127.0.0.1:{port}",
                "TRACKER_INGEST_URL": f"http://127.0.0.1:{port}",
                "TRACKER_SSE_URL": f"http://127.0.0.1:{port}",
                "TRACKER_API_KEY": "trk_000000000000_" + "A" * 43,
            }
        )
    )

    async def calls() -> tuple[object, object]:
        async with Client(build_server(settings)) as client:
            listed = await client.call_tool("list_tracking_urls", {})
            health = await client.call_tool("get_platform_health", {})
            return listed, health

    listed, health = asyncio.run(calls())
    assert error_json(listed)["code"] == "unreachable"
    assert not health.is_error
    assert '"ok":false' in health.content[0].text
