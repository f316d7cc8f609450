"""Webhook tools agree with the API; delete needs confirm and replay reports the API's reason."""

from __future__ import annotations

from tests.conftest import free_port
from tests.mcp.conftest import error_json, result_json

# The endpoint listens nowhere and its filter matches no event, so nothing is ever sent.
NEVER_SENT = ["mcp_test_never_sent"]


def _create(mcp_stdio) -> dict:
    created = result_json(
        mcp_stdio.call(
            "create_webhook",
            {
                "url": f"http://127.0.0.1:{free_port()}/hook",
                "event_types": NEVER_SENT,
                "description": "mcp test",
            },
        )
    )
    assert created["secret"]
    return created["endpoint"]


def test_create_list_get_match_api(mcp_stdio, platform):
    endpoint = _create(mcp_stdio)
    endpoint_id = endpoint["endpoint_id"]

    listed = result_json(mcp_stdio.call("list_webhooks"))
    assert listed["endpoints"] == platform.api("GET", "/api/webhooks").json()["endpoints"]
    got = result_json(mcp_stdio.call("get_webhook", {"endpoint_id": endpoint_id}))
    assert got["event_types"] == NEVER_SENT
    assert {key: got[key] for key in endpoint} == platform.api(
        "GET", f"/api/webhooks/{endpoint_id}"
    ).json()


def test_deliveries_and_dead_letters_match_api(mcp_stdio, platform):
    endpoint_id = _create(mcp_stdio)["endpoint_id"]

    deliveries = result_json(
        mcp_stdio.call(
            "list_webhook_deliveries", {"endpoint_id": endpoint_id, "status": "dead", "limit": 5}
        )
    )
    from_api = platform.api(
        "GET", f"/api/webhooks/{endpoint_id}/deliveries", params={"status": "dead", "limit": "5"}
    ).json()
    assert deliveries["deliveries"] == from_api["deliveries"]

    dead = result_json(mcp_stdio.call("list_webhook_dead_letters", {"limit": 5}))
    assert (
        dead["deliveries"]
        == platform.api("GET", "/api/webhook-dead-letters", params={"limit": "5"}).json()[
            "deliveries"
        ]
    )


def test_delete_needs_confirm(mcp_stdio, platform):
    endpoint_id = _create(mcp_stdio)["endpoint_id"]

    rejected = error_json(mcp_stdio.call("delete_webhook", {"endpoint_id": endpoint_id}))
    assert rejected["code"] == "confirmation_required"
    assert platform.api("GET", f"/api/webhooks/{endpoint_id}").status_code == 200

    deleted = result_json(
        mcp_stdio.call("delete_webhook", {"endpoint_id": endpoint_id, "confirm": True})
    )
    assert deleted["deleted"] == endpoint_id
    assert platform.api("GET", f"/api/webhooks/{endpoint_id}").status_code == 404


def test_replay_unknown_delivery_reports_reason(mcp_stdio, platform):
    error = error_json(
        mcp_stdio.call("replay_webhook_delivery", {"delivery_id": "no_such_delivery"})
    )
    direct = platform.api("POST", "/api/webhook-deliveries/no_such_delivery/replay")

    assert error["status"] == direct.status_code == 404
    assert error["code"] == direct.json()["error"]["code"]
    assert error["message"] == direct.json()["error"]["message"]


def test_create_rejects_non_http_url(mcp_stdio, platform):
    before = platform.api("GET", "/api/webhooks").json()["endpoints"]

    result = mcp_stdio.call("create_webhook", {"url": "ftp://example.com/hook"})
    assert result.is_error
    assert "url" in result.content[0].text
    assert platform.api("GET", "/api/webhooks").json()["endpoints"] == before
