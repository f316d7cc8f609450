"""TrackerApi and AsyncTrackerApi against a scripted local server standing in for `tracker api`."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import pytest
from conftest import Reply
from tracker_sdk import ApiError, AsyncTrackerApi, TrackerApi

API_KEY = "trk_0123456789ab_" + "A" * 43


def event(n: int) -> dict:
    return {
        "event_id": f"id-{n}",
        "event_type": "click",
        "timestamp": 1_700_000_000_000 + n,
        "ip": "203.0.113.0",
        "user_agent": "ua",
        "referer": "",
        "accept_language": "en",
        "request_path": "/t",
        "request_host": "h",
        "params": {"key_prefix": "acme1", "n": str(n)},
    }


def paged(request):
    query = parse_qs(urlsplit(request.path).query)
    cursor = query.get("cursor", ["0"])[0]
    start = int(cursor)
    following = str(start + 2) if start + 2 < 5 else None
    return Reply(
        200,
        {
            "events": [event(n) for n in range(start, min(start + 2, 5))],
            "next_cursor": following,
            "tier": "cold",
            "data_through_ms": None,
        },
    )


def test_api_events_follows_cursor(server):
    server.default = paged
    with TrackerApi(server.url, API_KEY) as api:
        events = list(api.events(event_type="click", hours=24))

    assert [item.params["n"] for item in events] == ["0", "1", "2", "3", "4"]
    assert events[0].timestamp == 1_700_000_000_000
    assert len(server.requests) == 3
    first = parse_qs(urlsplit(server.requests[0].path).query)
    assert first == {"event_type": ["click"], "hours": ["24"]}
    assert parse_qs(urlsplit(server.requests[1].path).query)["cursor"] == ["2"]
    assert server.requests[0].headers["authorization"] == f"Bearer {API_KEY}"


def test_api_stats_and_match(server):
    server.script = [
        Reply(
            200,
            {
                "total": 12,
                "rows": [{"param:sub1": "google", "count": 12}],
                "truncated": False,
                "tier": "warm",
                "data_through_ms": 1_700_000_000_000,
            },
        ),
        Reply(
            200,
            {
                "pairs": [
                    {"trigger_event": event(1), "result_event": event(2), "time_delta_ms": 1500}
                ],
                "summary": {
                    "triggers": 2,
                    "results": 1,
                    "matched": 1,
                    "match_rate": 0.5,
                    "time_delta_ms": {
                        "p50": 1500,
                        "p90": 1500,
                        "p99": 1500,
                        "min": 1500,
                        "max": 1500,
                    },
                },
                "tier": "cold",
                "data_through_ms": None,
            },
        ),
    ]
    with TrackerApi(server.url, API_KEY) as api:
        stats = api.stats(group_by="param:sub1", hours=48)
        result = api.match("click", "postback", "click_id")

    assert stats.total == 12
    assert stats.rows == [{"param:sub1": "google", "count": 12}]
    assert stats.truncated is False
    assert stats.tier == "warm"
    assert result.match_rate == 0.5
    assert result.triggers == 2
    assert result.matched == 1
    assert result.time_delta_ms["p50"] == 1500
    assert result.pairs[0].time_delta_ms == 1500
    assert result.pairs[0].result_event.event_id == "id-2"
    assert result.tier == "cold"
    match_query = parse_qs(urlsplit(server.requests[1].path).query)
    assert match_query == {"trigger": ["click"], "result": ["postback"], "on": ["click_id"]}


def test_api_tracking_url_lifecycle(server):
    link = {
        "tu_id": "tu_1",
        "key_prefix": "acme1",
        "destination": "https://a.example/",
        "name": "spring",
        "params": {"sub1": "x"},
        "status": "active",
        "created_at": 1,
        "updated_at": 1,
    }
    server.script = [
        Reply(201, link),
        Reply(200, {"tracking_urls": [link]}),
        Reply(200, link),
        Reply(200, {**link, "destination": "https://b.example/"}),
        Reply(200, {**link, "status": "disabled"}),
    ]
    with TrackerApi(server.url, API_KEY) as api:
        created = api.create_tracking_url("https://a.example/", name="spring", params={"sub1": "x"})
        listed = api.list_tracking_urls()
        fetched = api.get_tracking_url("tu_1")
        rotated = api.rotate_tracking_url("tu_1", "https://b.example/")
        disabled = api.disable_tracking_url("tu_1")

    assert created.tu_id == "tu_1"
    assert created.active
    assert [item.tu_id for item in listed] == ["tu_1"]
    assert fetched.params == {"sub1": "x"}
    assert rotated.destination == "https://b.example/"
    assert not disabled.active
    calls = [(request.method, urlsplit(request.path).path) for request in server.requests]
    assert calls == [
        ("POST", "/api/tracking-urls"),
        ("GET", "/api/tracking-urls"),
        ("GET", "/api/tracking-urls/tu_1"),
        ("PATCH", "/api/tracking-urls/tu_1"),
        ("PATCH", "/api/tracking-urls/tu_1"),
    ]
    assert server.requests[0].json() == {
        "destination": "https://a.example/",
        "name": "spring",
        "params": {"sub1": "x"},
    }
    assert server.requests[3].json() == {"destination": "https://b.example/"}


@pytest.mark.parametrize(
    ("reply", "status", "code", "field"),
    [
        (
            Reply(
                400, {"error": {"code": "invalid_param", "message": "bad hours", "field": "hours"}}
            ),
            400,
            "invalid_param",
            "hours",
        ),
        (Reply(401, {"code": "unauthorized", "message": "no key"}), 401, "unauthorized", None),
        (Reply(404, None), 404, "http_404", None),
        (Reply(500, ["not", "an", "object"]), 500, "http_500", None),
    ],
)
def test_api_error_carries_code_and_field(server, reply, status, code, field):
    server.script = [reply]
    with TrackerApi(server.url, API_KEY) as api, pytest.raises(ApiError) as caught:
        api.stats(hours="many")
    assert caught.value.status == status
    assert caught.value.code == code
    assert caught.value.field == field


def test_api_success_must_be_object(server):
    server.script = [Reply(200, [1, 2])]
    with TrackerApi(server.url, API_KEY) as api, pytest.raises(ApiError, match="invalid_response"):
        api.stats()


def test_api_rejects_empty_key():
    with pytest.raises(ValueError, match="api_key"):
        TrackerApi("http://127.0.0.1:9", "")


async def test_async_api_events_and_errors(server):
    server.default = paged
    async with AsyncTrackerApi(server.url, API_KEY) as api:
        events = [item async for item in api.events()]
        assert len(events) == 5
        server.script = [Reply(422, {"error": {"code": "invalid_param", "field": "on"}})]
        with pytest.raises(ApiError) as caught:
            await api.match("click", "postback", "")
    assert caught.value.field == "on"
