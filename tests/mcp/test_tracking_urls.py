"""Tracking URL tools agree with the API and change links only as their descriptions state."""

from __future__ import annotations

import httpx

from tests.mcp.conftest import error_json, result_json, wait_until

DESTINATION = "https://example.com/landing"
# The event filter drops clicks from non-browser user agents such as httpx's own.
BROWSER = {
    "User-Agent": "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 Chrome/131.0 Safari/537.36"
}


def _create(mcp_stdio, **extra) -> dict:
    return result_json(mcp_stdio.call("create_tracking_url", {"destination": DESTINATION, **extra}))


def test_create_and_get_match_api(mcp_stdio, platform):
    created = _create(mcp_stdio, name="Spring banner", params={"offer_id": "7"})

    from_api = platform.api("GET", f"/api/tracking-urls/{created['tu_id']}").json()
    assert created["destination"] == from_api["destination"] == DESTINATION
    assert created["params"] == from_api["params"] == {"offer_id": "7"}
    assert created["short_url"] == f"{platform.ingest_url}/t/{created['tu_id']}"
    assert created["source"] == "api"

    got = result_json(mcp_stdio.call("get_tracking_url", {"tu_id": created["tu_id"]}))
    assert {key: got[key] for key in from_api} == from_api


def test_list_matches_api(mcp_stdio, platform):
    _create(mcp_stdio)

    listed = result_json(mcp_stdio.call("list_tracking_urls"))
    from_api = platform.api("GET", "/api/tracking-urls").json()["tracking_urls"]
    assert [link["tu_id"] for link in listed["tracking_urls"]] == [
        link["tu_id"] for link in from_api
    ]
    assert listed["count"] == len(from_api)


def test_rotate_needs_confirm(mcp_stdio, platform):
    tu_id = _create(mcp_stdio)["tu_id"]
    new_destination = "https://example.com/rotated"

    rejected = error_json(
        mcp_stdio.call("rotate_tracking_url", {"tu_id": tu_id, "destination": new_destination})
    )
    assert rejected["code"] == "confirmation_required"
    assert rejected["field"] == "confirm"
    assert platform.api("GET", f"/api/tracking-urls/{tu_id}").json()["destination"] == DESTINATION

    rotated = result_json(
        mcp_stdio.call(
            "rotate_tracking_url",
            {"tu_id": tu_id, "destination": new_destination, "confirm": True},
        )
    )
    assert rotated["destination"] == new_destination
    assert (
        platform.api("GET", f"/api/tracking-urls/{tu_id}").json()["destination"] == new_destination
    )


def test_disable_and_enable_change_redirect(mcp_stdio, platform):
    tu_id = _create(mcp_stdio)["tu_id"]
    short_url = f"{platform.ingest_url}/t/{tu_id}"

    rejected = error_json(mcp_stdio.call("disable_tracking_url", {"tu_id": tu_id}))
    assert rejected["code"] == "confirmation_required"
    assert platform.api("GET", f"/api/tracking-urls/{tu_id}").json()["status"] == "active"

    disabled = result_json(
        mcp_stdio.call("disable_tracking_url", {"tu_id": tu_id, "confirm": True})
    )
    assert disabled["status"] == "disabled"
    assert platform.api("GET", f"/api/tracking-urls/{tu_id}").json()["status"] == "disabled"
    wait_until(lambda: httpx.get(short_url).status_code == 410, 30, "the link to answer 410")

    enabled = result_json(mcp_stdio.call("enable_tracking_url", {"tu_id": tu_id}))
    assert enabled["status"] == "active"
    wait_until(lambda: httpx.get(short_url).status_code == 307, 30, "the link to redirect again")


def test_link_stats_match_api(mcp_stdio, platform):
    tu_id = _create(mcp_stdio)["tu_id"]
    short_url = f"{platform.ingest_url}/t/{tu_id}"
    wait_until(
        lambda: httpx.get(short_url, headers=BROWSER).status_code == 307,
        30,
        "the new link to redirect",
    )
    httpx.get(short_url, headers=BROWSER)

    def counted() -> dict | None:
        stats = platform.api(
            "GET",
            "/api/events/stats",
            params={"param.tu_id": tu_id, "group_by": "event_type", "hours": "2"},
        ).json()
        return stats if stats["total"] >= 2 else None

    from_api = wait_until(counted, 60, "the link's clicks to reach the stats")
    stats = result_json(mcp_stdio.call("get_tracking_url_stats", {"tu_id": tu_id, "hours": 2}))
    assert stats["total"] == from_api["total"]
    assert stats["rows"] == from_api["rows"]
    assert stats["tier"] == from_api["tier"]


def test_unknown_link_is_not_found(mcp_stdio):
    for tool in (
        "get_tracking_url",
        "get_tracking_url_stats",
        "enable_tracking_url",
        "build_short_url",
    ):
        error = error_json(mcp_stdio.call(tool, {"tu_id": "no_such_link"}))
        assert error["code"] == "not_found", tool
        assert error["status"] == 404, tool
