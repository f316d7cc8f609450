"""Query model validation: every bad input raises QueryError naming the field, never anything else."""

from __future__ import annotations

from typing import Any

import pytest

from tracker.errors import QueryError
from tracker.query.model import EventFilter, EventsQuery, MatchQuery, StatsQuery
from tracker.query.service import hour_window

START, END = 1_795_132_800_000, 1_795_219_200_000
GOOD = EventFilter("alpha", START, END)

BAD_FILTERS: list[tuple[dict[str, Any], str, str]] = [
    (dict(tenant=""), "invalid_tenant", "tenant"),
    (dict(tenant="Alpha"), "invalid_tenant", "tenant"),
    (dict(tenant="a" * 33), "invalid_tenant", "tenant"),
    (dict(tenant="al'pha"), "invalid_tenant", "tenant"),
    (dict(start_ms=END, end_ms=START), "invalid_range", "end_ms"),
    (dict(start_ms=START, end_ms=START), "invalid_range", "end_ms"),
    (dict(start_ms=-1), "invalid_range", "start_ms"),
    (dict(end_ms=10**20), "invalid_range", "end_ms"),
    (dict(start_ms=1.5), "invalid_range", "start_ms"),
    (dict(start_ms=True), "invalid_range", "start_ms"),
    (dict(event_types=("click'--",)), "invalid_event_type", "event_type"),
    (dict(event_types=("x" * 65,)), "invalid_event_type", "event_type"),
    (dict(event_types=tuple(f"t{i}" for i in range(33))), "invalid_event_type", "event_types"),
    (dict(params=(("", "v"),)), "invalid_param", "param_key"),
    (dict(params=(("k" * 129, "v"),)), "invalid_param", "param_key"),
    (dict(params=(("k", "v" * 2049),)), "invalid_param", "param_value"),
    (dict(params=(("k", "a\x00b"),)), "invalid_param", "param_value"),
    (dict(params=(("k", 5),)), "invalid_param", "param_value"),
    (dict(params=(("k",),)), "invalid_param", "param_key"),
    (dict(params=tuple((f"k{i}", "v") for i in range(17))), "invalid_param", "param_key"),
]


@pytest.mark.parametrize(("changes", "code", "field"), BAD_FILTERS)
def test_filter_rejects_bad_input(changes: dict[str, Any], code: str, field: str) -> None:
    arguments = dict(tenant="alpha", start_ms=START, end_ms=END) | changes
    with pytest.raises(QueryError) as error:
        EventFilter(**arguments)
    assert error.value.code == code
    assert error.value.field == field
    assert isinstance(error.value, ValueError)


@pytest.mark.parametrize(
    ("group_by", "tz", "code"),
    [
        (("week",), "UTC", "invalid_group_by"),
        (("param:",), "UTC", "invalid_group_by"),
        (("event_type", "event_type"), "UTC", "invalid_group_by"),
        (("a", "b", "c", "d", "e"), "UTC", "invalid_group_by"),
        (("day",), "Mars/Olympus", "invalid_timezone"),
        (("day",), "../../etc/passwd", "invalid_timezone"),
        (("day",), 'UTC")); DROP', "invalid_timezone"),
        (("day",), "", "invalid_timezone"),
    ],
)
def test_stats_query_rejects_bad_grouping(group_by: tuple[str, ...], tz: str, code: str) -> None:
    with pytest.raises(QueryError) as error:
        StatsQuery(GOOD, group_by, tz)
    assert error.value.code == code


def test_param_group_key_longest_accepted() -> None:
    query = StatsQuery(GOOD, ("param:" + "k" * 128,))
    assert query.group_by == ("param:" + "k" * 128,)


@pytest.mark.parametrize("limit", [0, -1, 1001, 10**9, True, "5"])
def test_events_query_rejects_bad_limit(limit: Any) -> None:
    with pytest.raises(QueryError) as error:
        EventsQuery(GOOD, limit=limit)
    assert error.value.code == "invalid_limit"


def test_match_rejects_same_trigger_result() -> None:
    with pytest.raises(QueryError) as error:
        MatchQuery("alpha", "click", "click", "click_id", START, END)
    assert error.value.code == "invalid_match"
    assert error.value.field == "result"
    assert "different event type" in str(error.value)


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        (dict(window_ms=-1), "window_ms"),
        (dict(window_ms=10**15), "window_ms"),
        (dict(limit=1001), "limit"),
        (dict(on=""), "on"),
        (dict(trigger="a b"), "trigger"),
        (dict(start_ms=END, end_ms=START), "end_ms"),
    ],
)
def test_match_rejects_bad_input(changes: dict[str, Any], field: str) -> None:
    arguments = dict(
        tenant="alpha",
        trigger="click",
        result="postback",
        on="click_id",
        start_ms=START,
        end_ms=END,
    )
    with pytest.raises(QueryError) as error:
        MatchQuery(**(arguments | changes))
    assert error.value.field == field


@pytest.mark.parametrize(
    ("hours", "code"), [(0, "invalid_hours"), (-3, "invalid_hours"), (10**9, "window_too_long")]
)
def test_hour_window_rejects_bad_hours(hours: int, code: str) -> None:
    with pytest.raises(QueryError) as error:
        hour_window(hours, START + 123)
    assert error.value.code == code
    assert error.value.field == "hours"


def test_hour_window_ends_next_hour() -> None:
    start, end = hour_window(48, START + 123)
    assert end == START + 3_600_000
    assert end - start == 48 * 3_600_000


def test_error_echo_is_truncated() -> None:
    with pytest.raises(QueryError) as error:
        StatsQuery(GOOD, ("x" * 5000,))
    assert len(str(error.value)) < 200
