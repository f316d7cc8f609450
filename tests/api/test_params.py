"""Tests of query-string decoding and the time, filter, group-by and window parsers."""

from __future__ import annotations

import pytest

from tracker.api.errors import ApiError
from tracker.api.params import (
    MAX_QUERY_VALUES,
    decode_query,
    parse_param_filters,
    parse_time,
    parse_time_range,
    parse_window,
)

HOUR_MS = 3_600_000
NOW_MS = 1_796_000_000_000 + 1234


def test_decode_query_decodes_once() -> None:
    args = decode_query({"param.sub%201": ["a%2Bb+c"], "x": ["%2541"]})

    assert args.all("param.sub 1") == ["a+b c"]
    # %2541 decodes to the literal text %41, never further to A.
    assert args.all("x") == ["%41"]


def test_decode_query_rejects_invalid_utf8() -> None:
    with pytest.raises(ApiError) as caught:
        decode_query({"param_value": ["%ff%fe"]})

    assert caught.value.code == "invalid_encoding"
    assert caught.value.field == "param_value"


def test_decode_query_limits_parameter_count() -> None:
    with pytest.raises(ApiError) as caught:
        decode_query({"event_type": ["x"] * (MAX_QUERY_VALUES + 1)})

    assert caught.value.code == "too_many_parameters"


def test_unknown_parameters_are_named() -> None:
    args = decode_query({"hours": ["1"], "bogus": ["1"], "param.a": ["b"]})

    with pytest.raises(ApiError) as caught:
        args.reject_unknown(["hours"], prefixes=("param.",))

    assert caught.value.code == "unknown_parameter"
    assert caught.value.field == "bogus"
    assert "bogus" in caught.value.message


def test_param_pairs_match_by_position() -> None:
    args = decode_query({"param_key": ["a", "b"], "param_value": ["1", "2"], "param.c": ["3"]})

    assert parse_param_filters(args) == (("a", "1"), ("b", "2"), ("c", "3"))


def test_unpaired_param_filter_is_rejected() -> None:
    args = decode_query({"param_key": ["a", "b"], "param_value": ["1"]})

    with pytest.raises(ApiError) as caught:
        parse_param_filters(args)

    assert caught.value.code == "unpaired_param_filter"
    assert caught.value.field == "param_value"


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("1796000000000", 1_796_000_000_000),
        ("2026-12-04T00:00:00Z", 1_796_342_400_000),
        ("2026-12-04T01:00:00+01:00", 1_796_342_400_000),
        ("2026-12-04T00:00:00", 1_796_342_400_000),
        ("2026-12-04", 1_796_342_400_000),
    ],
)
def test_parse_time_accepts_iso_and_ms(raw: str, expected: int) -> None:
    assert parse_time(raw, "from") == expected


@pytest.mark.parametrize("raw", ["yesterday", "-5", "2026-13-01", "99999999999999999", "1e12", ""])
def test_parse_time_rejects_garbage(raw: str) -> None:
    with pytest.raises(ApiError) as caught:
        parse_time(raw, "from")

    assert caught.value.code == "invalid_time"
    assert caught.value.field == "from"


def test_hours_window_ends_at_next_hour() -> None:
    start_ms, end_ms = parse_time_range(decode_query({"hours": ["2"]}), now_ms=NOW_MS, max_hours=10)

    assert end_ms % HOUR_MS == 0
    assert end_ms > NOW_MS
    assert end_ms - start_ms == 2 * HOUR_MS


@pytest.mark.parametrize(
    ("query", "code", "field"),
    [
        ({"hours": ["0"]}, "out_of_range", "hours"),
        ({"hours": ["1000000000"]}, "out_of_range", "hours"),
        ({"hours": ["abc"]}, "invalid_integer", "hours"),
        ({"hours": ["1"], "from": ["0"]}, "conflicting_parameters", "hours"),
        ({"from": ["2000"], "to": ["1000"]}, "invalid_range", "to"),
        ({"from": ["0"], "to": ["1796000000000"]}, "range_too_large", "from"),
        ({"hours": ["1", "2"]}, "repeated_parameter", "hours"),
    ],
)
def test_bad_time_ranges_are_rejected(query: dict[str, list[str]], code: str, field: str) -> None:
    with pytest.raises(ApiError) as caught:
        parse_time_range(decode_query(query), now_ms=NOW_MS, max_hours=24 * 366)

    assert caught.value.code == code
    assert caught.value.field == field


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("30m", 1_800_000),
        ("24h", 86_400_000),
        ("7d", 604_800_000),
        ("90s", 90_000),
        ("500", 500),
        ("500ms", 500),
    ],
)
def test_parse_window_units(raw: str, expected: int) -> None:
    assert parse_window(raw, 0) == expected


@pytest.mark.parametrize("raw", ["", "1w", "-1h", "h", "1.5h", "9" * 13])
def test_parse_window_rejects_garbage(raw: str) -> None:
    with pytest.raises(ApiError) as caught:
        parse_window(raw, 0)

    assert caught.value.code == "invalid_window"
