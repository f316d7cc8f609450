"""Analytics tools return the same numbers as the API returns directly."""

from __future__ import annotations

import uuid

import httpx
import pytest

from tests.mcp.conftest import result_json, wait_until

BROWSER = {
    "User-Agent": "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 Chrome/131.0 Safari/537.36"
}
CLICKS = 3


@pytest.fixture(scope="module")
def journeys(mcp_stdio, platform) -> int:
    """Record CLICKS clicks and a postback for the first two; wait until the API counts them.

    Matching pairs events that both carry the param `on`, so each click carries its own click_id.
    """
    for index in range(CLICKS):
        click_id = f"mcp-{uuid.uuid4().hex}"
        built = result_json(
            mcp_stdio.call(
                "build_signed_click_url",
                {
                    "destination": "https://example.com/a",
                    "params": {"campaign": "mcp", "click_id": click_id},
                },
            )
        )
        click = httpx.get(built["url"], headers=BROWSER)
        assert click.status_code == 307
        if index < 2:
            postback = result_json(
                mcp_stdio.call(
                    "build_postback_url",
                    {"params": {"event_type": "postback", "click_id": click_id}},
                )
            )
            assert httpx.get(postback["url"], headers=BROWSER).status_code == 200

    def counted() -> bool:
        match = platform.api(
            "GET",
            "/api/events/match",
            params={"trigger": "click", "result": "postback", "on": "click_id", "hours": "2"},
        ).json()
        # Wait for every click, not only the two matched ones: the paging test needs all three.
        return match["summary"]["triggers"] >= CLICKS and match["summary"]["matched"] >= 2

    wait_until(counted, 90, "the clicks and postbacks to reach the match API")
    return CLICKS


def test_stats_match_api(mcp_stdio, platform, journeys):
    arguments = {"group_by": ["event_type", "param:campaign"], "hours": 2}
    stats = result_json(mcp_stdio.call("get_event_stats", arguments))
    from_api = platform.api(
        "GET", "/api/events/stats", params={"group_by": "event_type,param:campaign", "hours": "2"}
    ).json()

    assert stats["total"] == from_api["total"]
    assert stats["rows"] == from_api["rows"]
    assert stats["tier"] == from_api["tier"]
    assert any(row.get("param:campaign") == "mcp" or "mcp" in row.values() for row in stats["rows"])


def test_stats_filter_by_param(mcp_stdio, platform, journeys):
    stats = result_json(
        mcp_stdio.call(
            "get_event_stats", {"params": {"campaign": "mcp"}, "event_types": ["click"], "hours": 2}
        )
    )
    from_api = platform.api(
        "GET",
        "/api/events/stats",
        params={"param.campaign": "mcp", "event_type": "click", "hours": "2"},
    ).json()

    assert stats["total"] == from_api["total"]
    assert stats["total"] >= journeys


def test_search_events_pages_like_api(mcp_stdio, platform, journeys):
    first = result_json(
        mcp_stdio.call("search_events", {"event_types": ["click"], "hours": 2, "limit": 2})
    )
    from_api = platform.api(
        "GET", "/api/events", params={"event_type": "click", "hours": "2", "limit": "2"}
    ).json()
    assert [event["event_id"] for event in first["events"]] == [
        event["event_id"] for event in from_api["events"]
    ]
    assert first["tier"] == from_api["tier"]
    assert first["next_cursor"]

    second = result_json(
        mcp_stdio.call(
            "search_events",
            {"event_types": ["click"], "hours": 2, "limit": 2, "cursor": first["next_cursor"]},
        )
    )
    first_ids = {event["event_id"] for event in first["events"]}
    assert second["events"]
    assert not first_ids & {event["event_id"] for event in second["events"]}


def test_match_rate_matches_api(mcp_stdio, platform, journeys):
    matched = result_json(
        mcp_stdio.call(
            "match_events", {"result": "postback", "on": "click_id", "hours": 2, "window": "30m"}
        )
    )
    from_api = platform.api(
        "GET",
        "/api/events/match",
        params={
            "trigger": "click",
            "result": "postback",
            "on": "click_id",
            "hours": "2",
            "window": "30m",
            "limit": "20",
        },
    ).json()

    assert matched["summary"] == from_api["summary"]
    assert matched["match_rate"] == from_api["match_rate"]
    assert matched["tier"] == from_api["tier"]
    assert len(matched["pairs"]) == len(from_api["pairs"])


def test_recent_events_are_newest_page(mcp_stdio, platform, journeys):
    recent = result_json(mcp_stdio.call("get_recent_events", {"limit": 3}))
    from_api = platform.api("GET", "/api/events", params={"hours": "1", "limit": "3"}).json()

    assert [event["event_id"] for event in recent["events"]] == [
        event["event_id"] for event in from_api["events"]
    ]
    assert len(recent["events"]) == 3
    assert recent["tier"] == from_api["tier"]
