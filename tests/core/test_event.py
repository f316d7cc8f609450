"""build_event: field order, escaping, limits and a differential check against orjson."""

from __future__ import annotations

import json

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from tracker import _core

from .conftest import REQUEST

FIELD_ORDER = [
    "event_id",
    "event_type",
    "timestamp",
    "ip",
    "user_agent",
    "referer",
    "accept_language",
    "request_path",
    "request_host",
    "params",
]
EVENT_TYPES = st.text(
    alphabet="abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.:-",
    min_size=1,
    max_size=64,
)


def build(event_type: str = "click", params=(), limits=None, **overrides):
    fields = dict(REQUEST)
    fields.update(overrides)
    return _core.build_event(
        event_type, list(params), limits=limits or _core.EventLimits(), **fields
    )


@given(
    event_type=EVENT_TYPES,
    params=st.lists(st.tuples(st.text(min_size=1, max_size=20), st.text(max_size=40)), max_size=10),
    user_agent=st.text(max_size=100),
    timestamp=st.integers(min_value=0, max_value=2**53),
)
def test_event_json_matches_orjson(event_type, params, user_agent, timestamp) -> None:
    limits = _core.EventLimits()
    event_id, document = build(
        event_type, params, limits, user_agent=user_agent, timestamp=timestamp
    )
    expected = {
        "event_id": event_id,
        "event_type": event_type,
        "timestamp": timestamp,
        **{**REQUEST, "user_agent": user_agent},
        "params": dict(params),
    }
    expected = {name: expected[name] for name in FIELD_ORDER}
    assert document == orjson.dumps(expected)
    assert json.loads(document) == expected


def test_field_order_is_original_schema() -> None:
    _, document = build(params=[("key_prefix", "acme")])
    assert list(json.loads(document)) == FIELD_ORDER


def test_later_duplicate_param_wins_in_first_position() -> None:
    _, document = build(params=[("a", "1"), ("b", "2"), ("a", "3")])
    assert list(json.loads(document)["params"].items()) == [("a", "3"), ("b", "2")]


def test_many_duplicate_params_collapse() -> None:
    params = [(f"k{i % 20}", str(i)) for i in range(1000)]
    _, document = build(params=params)
    assert json.loads(document)["params"] == dict(params)


def test_given_event_id_is_canonicalised() -> None:
    event_id, document = build(event_id="017F22E2-79B0-7CC3-98C4-DC0C0C07398F")
    assert event_id == "017f22e2-79b0-7cc3-98c4-dc0c0c07398f"
    assert json.loads(document)["event_id"] == event_id


def test_generated_event_id_is_uuid7() -> None:
    event_id, document = build()
    assert _core.uuid7_timestamp_ms(event_id) == json.loads(document)["timestamp"]


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"event_type": ""}, "event_type"),
        ({"event_type": "a" * 65}, "event_type"),
        ({"event_type": "has space"}, "event_type"),
        ({"event_type": "ümlaut"}, "event_type"),
        ({"params": [("k", "v")] * 1 + [(f"p{i}", "v") for i in range(64)]}, "params"),
        ({"params": [("", "v")]}, "params"),
        ({"params": [("k" * 129, "v")]}, "params"),
        ({"params": [("big", "v" * 2049)]}, "params.big"),
        ({"event_id": "not-a-uuid"}, "event_id"),
        ({"event_id": ""}, "event_id"),
        ({"timestamp": -1}, "timestamp"),
    ],
)
def test_invalid_event_names_field(kwargs: dict, field: str) -> None:
    event_type = kwargs.pop("event_type", "click")
    params = kwargs.pop("params", ())
    with pytest.raises(_core.EventError) as raised:
        build(event_type, params, **kwargs)
    assert raised.value.field == field
    assert len(str(raised.value)) < 300


def test_header_fields_truncated_at_char_boundary() -> None:
    limits = _core.EventLimits(max_field_len=10)
    _, document = build(limits=limits, user_agent="ab" + "é" * 10, referer="x" * 50)
    event = json.loads(document)
    assert event["user_agent"] == "ab" + "é" * 4
    assert len(event["user_agent"].encode()) <= 10
    assert event["referer"] == "x" * 10


def test_control_characters_escaped() -> None:
    value = "".join(chr(code) for code in range(0x20)) + '"\\\u2028\U0001f600'
    _, document = build(params=[("v", value)], user_agent=value)
    assert b"\n" not in document
    event = orjson.loads(document)
    assert event["params"]["v"] == value
    assert event["user_agent"] == value


def test_limits_reject_nonpositive() -> None:
    for name in ("max_params", "max_key_len", "max_value_len", "max_field_len"):
        with pytest.raises(ValueError, match=name):
            _core.EventLimits(**{name: 0})
    limits = _core.EventLimits(max_params=3)
    assert (limits.max_params, limits.max_key_len) == (3, 128)
    assert "max_params=3" in repr(limits)


def test_surrogate_str_rejected() -> None:
    with pytest.raises(UnicodeEncodeError):
        build(params=[("k", "\ud800")])
