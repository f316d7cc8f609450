"""`encode_hot_copy` against `event_problem` and against what PostgreSQL stores from its rows."""

from __future__ import annotations

import time
from typing import Any

import asyncpg
import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.consumers.conftest import make_event
from tracker._core import encode_hot_copy
from tracker.consumers.events import (
    MAX_FIELD_LEN,
    MAX_KEY_LEN,
    MAX_PARAMS,
    MAX_TIMESTAMP_MS,
    MAX_VALUE_LEN,
    MIN_TIMESTAMP_MS,
    STRING_FIELDS,
    event_problem,
)
from tracker.consumers.hot_writer import HotWriter, HotWriterSettings
from tracker.consumers.runtime import Batch
from tracker.hot.schema import DAY_MS

NOW_MS = int(time.time() * 1000)
WIDE = "é"  # two UTF-8 bytes, one character: lengths count characters, as Python does


def encode(documents: list[bytes]) -> Any:
    return encode_hot_copy(documents, cutoff_ms=MIN_TIMESTAMP_MS, horizon_ms=MAX_TIMESTAMP_MS)


def python_reasons(events: list[dict[str, Any]]) -> list[tuple[int, str]]:
    reasons = [(index, event_problem(event)) for index, event in enumerate(events)]
    return [(index, reason) for index, reason in reasons if reason is not None]


def changed(**fields: Any) -> dict[str, Any]:
    return {**make_event("acme", timestamp=NOW_MS), **fields}


def with_params(**params: Any) -> dict[str, Any]:
    return changed(params={"key_prefix": "acme", **params})


CASES: list[dict[str, Any]] = [
    make_event("acme", timestamp=NOW_MS),
    changed(event_id="0193A4B2-7C3D-7E4F-8A5B-6C7D8E9FA0B1"),
    changed(event_id="0193a4b2-7c3d-7e4f-8a5b-6c7d8e9fa0b"),
    changed(event_id=None),
    changed(event_type=""),
    changed(event_type="x" * 64),
    changed(event_type="x" * 65),
    changed(event_type="clické"),
    changed(timestamp=True),
    changed(timestamp=float(NOW_MS)),
    changed(timestamp=MIN_TIMESTAMP_MS - 1),
    changed(timestamp=MAX_TIMESTAMP_MS),
    changed(timestamp=2**63 + 5),
    changed(timestamp=str(NOW_MS)),
    changed(ip=None),
    changed(referer=7),
    changed(user_agent=WIDE * MAX_FIELD_LEN),
    changed(user_agent=WIDE * (MAX_FIELD_LEN + 1)),
    changed(request_host=["h"]),
    changed(params=None),
    changed(params=["key_prefix", "acme"]),
    changed(params={"sub1": "x"}),
    changed(params={"key_prefix": "ACME"}),
    changed(params={"key_prefix": "a" * 33}),
    with_params(n=1),
    with_params(nested={"a": "b"}),
    with_params(flag=None),
    with_params(long=WIDE * MAX_VALUE_LEN),
    with_params(long=WIDE * (MAX_VALUE_LEN + 1)),
    with_params(**{WIDE * MAX_KEY_LEN: "v"}),
    with_params(**{WIDE * (MAX_KEY_LEN + 1): 1}),
    with_params(**{"k" * 60 + WIDE: 1}),
    with_params(**{f"k{number}": "v" for number in range(MAX_PARAMS - 1)}),
    with_params(**{f"k{number}": "v" for number in range(MAX_PARAMS)}),
]


def test_hot_copy_reasons_match_event_problem() -> None:
    assert len(CASES) > 30
    copy = encode([orjson.dumps(event) for event in CASES])

    assert copy.rejected == python_reasons(CASES)
    rejected = {index for index, _reason in copy.rejected}
    assert copy.indices == [index for index in range(len(CASES)) if index not in rejected]


def test_hot_copy_repeated_keys_keep_last_value() -> None:
    def base() -> bytes:
        """A fresh event's JSON without its closing brace."""
        return orjson.dumps(make_event("acme", timestamp=NOW_MS))[:-1]

    # Repeated params keys count once against the entry limit, as in a dict.
    many = "".join(f',"k{number}":"v","k{number}":"w"' for number in range(MAX_PARAMS - 1))
    documents = [
        base() + b',"timestamp":"late"}',
        base() + b',"timestamp":"late","timestamp":' + str(NOW_MS).encode() + b"}",
        b'{"params":{"n":1},' + base()[1:] + b"}",
        base()[:-1] + b',"sub1":7,"sub1":"x"}}',
        base()[:-1] + b',"sub1":"x","sub1":7}}',
        base()[:-1] + many.encode() + b"}}",
    ]

    events = [orjson.loads(document) for document in documents]
    copy = encode(documents)

    assert copy.rejected == python_reasons(events)
    assert copy.indices == [1, 2, 3, 5]


def test_hot_copy_leaves_out_expired_future_and_repeats() -> None:
    fresh = make_event("acme", timestamp=NOW_MS)
    events = [
        fresh,
        make_event("acme", timestamp=NOW_MS - 8 * DAY_MS),
        make_event("acme", timestamp=NOW_MS + 367 * DAY_MS),
        fresh,
        {**fresh, "timestamp": NOW_MS + 1},
    ]
    copy = encode_hot_copy(
        [orjson.dumps(event) for event in events],
        cutoff_ms=NOW_MS - 7 * DAY_MS,
        horizon_ms=NOW_MS + 366 * DAY_MS,
    )

    assert copy.indices == [0, 4]
    assert copy.rows == 2
    assert copy.expired == 1
    assert copy.duplicates == 1
    assert copy.rejected == [(2, "timestamp: more than 366 days in the future")]
    assert copy.days == sorted({NOW_MS - NOW_MS % DAY_MS, (NOW_MS + 1) - (NOW_MS + 1) % DAY_MS})


# orjson writes integers of up to 64 bits, and floats other than NaN and infinity.
json_scalars = st.one_of(
    st.text(max_size=8),
    st.integers(min_value=-(2**63), max_value=2**64 - 1),
    st.booleans(),
    st.none(),
    st.floats(allow_nan=False, allow_infinity=False),
)
wire_values = st.one_of(st.text(max_size=40), json_scalars)


@st.composite
def wire_events(draw: st.DrawFn) -> dict[str, Any]:
    event = make_event(
        draw(st.sampled_from(["acme", "globex", "Bad"])),
        timestamp=draw(st.sampled_from([NOW_MS, MIN_TIMESTAMP_MS - 1])),
    )
    for name in draw(st.lists(st.sampled_from(STRING_FIELDS), max_size=3)):
        event[name] = draw(wire_values)
    for name in draw(
        st.lists(st.sampled_from(["event_type", "event_id", "timestamp"]), max_size=1)
    ):
        event[name] = draw(wire_values)
    extra = draw(st.dictionaries(st.text(max_size=6), wire_values, max_size=4))
    event["params"] = {**event["params"], **extra}
    if draw(st.booleans()):
        del event[draw(st.sampled_from(list(event)))]
    return event


@settings(max_examples=300, deadline=None)
@given(st.lists(wire_events(), min_size=1, max_size=8))
def test_hot_copy_agrees_with_event_problem(events: list[dict[str, Any]]) -> None:
    copy = encode([orjson.dumps(event) for event in events])

    assert copy.rejected == python_reasons(events)


async def test_hot_copy_rows_round_trip_through_postgres(pg_dsn: str, pg_schema: str) -> None:
    tricky = 'quote " backslash \\ tab \t newline \n bell \x07 nul \x00 accents é 中 emoji 🎉'
    events = [
        make_event("acme", timestamp=NOW_MS, user_agent=tricky, q=tricky, **{tricky: "key"}),
        make_event("globex", "postback", timestamp=NOW_MS - DAY_MS, ip="", empty=""),
    ]
    del events[1]["referer"]
    writer = HotWriter(HotWriterSettings(dsn=pg_dsn, schema=pg_schema))
    await writer.open(None)  # type: ignore[arg-type]
    try:
        await writer.process(Batch(0, 0, 0, events, [orjson.dumps(event) for event in events]))
    finally:
        await writer.close()

    connection = await asyncpg.connect(pg_dsn)
    try:
        rows = await connection.fetch(
            f'SELECT event_id::text AS event_id, event_type, "timestamp", key_prefix, ip,'
            f" user_agent, referer, accept_language, request_path, request_host, params::text"
            f' AS params FROM "{pg_schema}".events ORDER BY "timestamp" DESC'
        )
    finally:
        await connection.close()

    assert len(rows) == len(events)
    for row, event in zip(rows, events, strict=True):
        assert row["event_id"] == event["event_id"]
        assert row["event_type"] == event["event_type"]
        assert row["timestamp"] == event["timestamp"]
        assert row["key_prefix"] == event["params"]["key_prefix"]
        for name in STRING_FIELDS:
            assert row[name] == event.get(name, "").replace("\x00", "")
        cleaned = {
            key.replace("\x00", ""): value.replace("\x00", "")
            for key, value in event["params"].items()
        }
        assert orjson.loads(row["params"]) == cleaned
