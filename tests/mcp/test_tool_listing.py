"""`tracker mcp` over stdio lists every tool with a description and a documented input schema."""

from __future__ import annotations

EXPECTED_TOOLS = {
    "build_encrypted_click_url",
    "build_impression_url",
    "build_postback_url",
    "build_short_url",
    "build_signed_click_url",
    "create_tracking_url",
    "create_webhook",
    "delete_webhook",
    "disable_tracking_url",
    "enable_tracking_url",
    "get_event_stats",
    "get_platform_health",
    "get_recent_events",
    "get_tenant",
    "get_tracking_url",
    "get_tracking_url_stats",
    "get_webhook",
    "list_api_keys",
    "list_tracking_urls",
    "list_webhook_dead_letters",
    "list_webhook_deliveries",
    "list_webhooks",
    "match_events",
    "replay_webhook_delivery",
    "rotate_tracking_url",
    "search_events",
}
DESTRUCTIVE_TOOLS = {"rotate_tracking_url", "disable_tracking_url", "delete_webhook"}


def test_lists_all_tools(mcp_stdio):
    tools = mcp_stdio.list_tools()

    assert {tool.name for tool in tools} == EXPECTED_TOOLS
    assert len(tools) == 26


def test_every_argument_is_documented(mcp_stdio):
    tools = mcp_stdio.list_tools()

    checked = 0
    for tool in tools:
        assert tool.description and len(tool.description) >= 40, tool.name
        for name, schema in tool.input_schema.get("properties", {}).items():
            assert schema.get("description"), f"{tool.name}.{name} has no description"
            if schema.get("type") != "boolean" and "enum" not in schema:
                assert schema.get("examples") or name == "cursor", (
                    f"{tool.name}.{name} has no examples"
                )
            checked += 1
    assert checked > 50


def test_destructive_tools_need_confirm(mcp_stdio):
    tools = {tool.name: tool for tool in mcp_stdio.list_tools()}

    for name in DESTRUCTIVE_TOOLS:
        tool = tools[name]
        assert "confirm" in tool.input_schema["properties"], name
        assert tool.annotations is not None and tool.annotations.destructive_hint, name
        assert "confirm: true" in tool.description, name
    for name in EXPECTED_TOOLS - DESTRUCTIVE_TOOLS:
        annotations = tools[name].annotations
        assert annotations is None or not annotations.destructive_hint, name
