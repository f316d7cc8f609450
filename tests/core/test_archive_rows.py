"""Archive rows built from documents, checked against the Python converter of decoded dicts."""

from __future__ import annotations

import gc
import json
from typing import Any

import orjson
import pyarrow as pa
import pytest
from hypothesis import given
from hypothesis import strategies as st

from tracker import _core
from tracker.consumers.archive_table import (
    ARCHIVE_SCHEMA,
    MAX_TIMESTAMP_MS,
    documents_to_table,
    events_to_table,
)

NOT_OBJECT = "event is not a JSON object"


def event(**overrides: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "event_id": "0193f4c2-7a1b-7000-8000-000000000001",
        "event_type": "click",
        "timestamp": 1_770_704_294_008,
        "ip": "203.0.113.7",
        "user_agent": "Mozilla/5.0",
        "referer": "https://example.com/",
        "accept_language": "en-US",
        "request_path": "/t",
        "request_host": "track.example.com",
        "params": {"key_prefix": "acme", "sub1": "google"},
    }
    base.update(overrides)
    return base


def python_reference(documents: list[bytes]) -> tuple[pa.Table, list[tuple[int, str]]]:
    """Rows and rejections of the old path: orjson.loads, then events_to_table on the objects."""
    decoded: list[Any] = []
    positions: list[int] = []
    rejected: list[tuple[int, str]] = []
    for index, document in enumerate(documents):
        try:
            value = orjson.loads(document)
        except orjson.JSONDecodeError:
            value = None
        if isinstance(value, dict):
            decoded.append(value)
            positions.append(index)
        else:
            rejected.append((index, NOT_OBJECT))
    converted = events_to_table(decoded)
    rejected.extend((positions[position], reason) for position, reason in converted.rejected)
    return converted.table, sorted(rejected)


def assert_same_as_python(documents: list[bytes]) -> None:
    expected_table, expected_rejected = python_reference(documents)

    converted = documents_to_table(documents)

    assert converted.table.schema == ARCHIVE_SCHEMA
    assert converted.rejected == expected_rejected
    assert converted.table.to_pylist() == expected_table.to_pylist()
    rejected_indexes = {index for index, _ in expected_rejected}
    assert converted.kept == [i for i in range(len(documents)) if i not in rejected_indexes]


def test_schema_is_archive_schema_with_nullability() -> None:
    batch = pa.record_batch(_core.archive_rows([orjson.dumps(event())]))

    assert batch.schema.equals(ARCHIVE_SCHEMA, check_metadata=True)
    params_type = batch.schema.field("params").type
    assert params_type.key_field.nullable is False
    assert params_type.item_field.nullable is True


def test_empty_input_gives_empty_rows() -> None:
    rows = _core.archive_rows([])

    assert rows.num_rows == 0
    assert len(rows) == 0
    assert rows.rejected == []
    assert pa.record_batch(rows).schema == ARCHIVE_SCHEMA


def test_rows_match_python_for_realistic_events() -> None:
    documents = [
        orjson.dumps(event(timestamp=0)),
        orjson.dumps(event(timestamp=MAX_TIMESTAMP_MS, event_type="postback")),
        orjson.dumps(event(params={"key_prefix": "globex", "a": "é😀", "b": ""})),
        orjson.dumps({k: v for k, v in event().items() if k not in ("ip", "referer")}),
        orjson.dumps(event(extra={"nested": [1, {"x": None}]}, version=2)),
        json.dumps(event(user_agent='quote " and \\ and \u2028')).encode(),
    ]

    assert_same_as_python(documents)


@pytest.mark.parametrize(
    "document",
    [
        b"",
        b"not json",
        b"[1, 2]",
        b'"text"',
        b"null",
        b"{} trailing",
        b'\xef\xbb\xbf{"event_id": "a"}',
        b'{"event_id": "\xff"}',
        b'{"event_id": "\\ud800"}',
        orjson.dumps(event(event_id="")),
        orjson.dumps(event(event_id=5)),
        orjson.dumps(event(event_type=None)),
        orjson.dumps(event(timestamp="1770704294008")),
        orjson.dumps(event(timestamp=-1)),
        orjson.dumps(event(timestamp=MAX_TIMESTAMP_MS + 1)),
        orjson.dumps(event(timestamp=True)),
        orjson.dumps(event(timestamp=1.0)),
        b'{"event_id":"a","event_type":"c","timestamp":18446744073709551615}',
        b'{"event_id":"a","event_type":"c","timestamp":99999999999999999999999}',
        orjson.dumps(event(params=[])),
        orjson.dumps(event(params="acme")),
        orjson.dumps(event(params={"sub1": "x"})),
        orjson.dumps(event(params={"key_prefix": ""})),
        orjson.dumps(event(params={"key_prefix": 7, "n": 5})),
        orjson.dumps(event(params={"key_prefix": "acme", "n": 5})),
        orjson.dumps(event(params={"key_prefix": "acme", "n": None})),
        orjson.dumps(event(ip=None)),
        orjson.dumps(event(request_host=["a"])),
        orjson.dumps(event(event_id="", timestamp="late", ip=None)),
    ],
)
def test_rejections_match_python(document: bytes) -> None:
    assert_same_as_python([orjson.dumps(event()), document, orjson.dumps(event(event_id="b"))])


@pytest.mark.parametrize(
    "document",
    [
        # A repeated key keeps its first position and its last value, as in a dict.
        b'{"event_id":"a","event_type":"c","timestamp":1,'
        b'"params":{"key_prefix":"acme","n":1,"m":"2","n":"3"}}',
        b'{"event_id":5,"event_type":"c","timestamp":1,"event_id":"a",'
        b'"params":{"key_prefix":"acme"}}',
        b'{"event_id":"a","event_type":"c","timestamp":1,"params":[],'
        b'"params":{"key_prefix":"acme"}}',
        b'{"event_id":"a","event_type":"c","timestamp":1,"params":{"key_prefix":"acme"},'
        b'"params":5}',
        # Escaped strings, including escaped keys.
        b'{"event_id":"a\\u0062","event_type":"c\\n","timestamp":1,'
        b'"params":{"key_\\u0070refix":"acme","k\\"ey":"v\\\\"}}',
        # Keys beyond the pairwise duplicate check.
        orjson.dumps(event(params={"key_prefix": "acme", **{f"p{i}": str(i) for i in range(40)}})),
        b'{"event_id":"a","event_type":"c","timestamp":1,"params":{"key_prefix":"acme",'
        + b",".join(f'"p{i % 20}":"{i}"'.encode() for i in range(40))
        + b"}}",
    ],
)
def test_edge_documents_match_python(document: bytes) -> None:
    assert_same_as_python([document])


def test_nesting_limit_matches_orjson() -> None:
    open_event = orjson.dumps(event())[:-1]
    deepest_accepted = open_event + b',"x":' + b"[" * 1023 + b"]" * 1023 + b"}"
    too_deep = open_event + b',"x":' + b"[" * 1024 + b"]" * 1024 + b"}"

    assert_same_as_python([deepest_accepted, too_deep])
    assert documents_to_table([too_deep]).rejected == [(0, NOT_OBJECT)]


TEXT = st.text(max_size=12)
EVENTS = st.fixed_dictionaries(
    {
        "event_id": TEXT,
        "event_type": TEXT,
        "timestamp": st.one_of(
            st.integers(min_value=-5, max_value=MAX_TIMESTAMP_MS + 5),
            st.integers(min_value=0, max_value=2**70),
            st.booleans(),
            st.floats(allow_nan=False, allow_infinity=False),
        ),
        "params": st.one_of(
            st.dictionaries(
                st.sampled_from(["key_prefix", "sub1", "ü", "a\nb"]),
                st.one_of(TEXT, st.integers(), st.none()),
                max_size=4,
            ),
            st.lists(TEXT, max_size=2),
        ),
    },
    optional={
        "ip": st.one_of(TEXT, st.none(), st.integers()),
        "referer": TEXT,
        "other": st.recursive(st.none() | TEXT, lambda inner: st.lists(inner, max_size=3)),
    },
)


@given(events=st.lists(EVENTS, max_size=8))
def test_random_events_match_python(events: list[dict[str, Any]]) -> None:
    assert_same_as_python([json.dumps(item).encode() for item in events])


VALID_EVENTS = st.builds(
    event,
    event_id=st.text(min_size=1),
    event_type=st.text(min_size=1),
    timestamp=st.integers(min_value=0, max_value=MAX_TIMESTAMP_MS),
    user_agent=st.text(),
    params=st.dictionaries(st.text(), st.text(), max_size=5).map(
        lambda params: {**params, "key_prefix": "acme"}
    ),
)


@given(events=st.lists(VALID_EVENTS, min_size=1, max_size=8), ensure_ascii=st.booleans())
def test_valid_events_all_archived(events: list[dict[str, Any]], ensure_ascii: bool) -> None:
    documents = [json.dumps(item, ensure_ascii=ensure_ascii).encode() for item in events]

    converted = documents_to_table(documents)

    assert converted.rejected == []
    assert converted.table.num_rows == len(events)
    assert_same_as_python(documents)


def test_capsules_import_twice_and_free_unused() -> None:
    rows = _core.archive_rows([orjson.dumps(event()), orjson.dumps(event(event_id="b"))])

    schema_capsule, array_capsule = rows.__arrow_c_array__()
    del schema_capsule, array_capsule
    gc.collect()
    first = pa.record_batch(rows)
    second = pa.record_batch(rows)

    assert first.equals(second)
    assert first.num_rows == 2
    assert first.column("event_id").to_pylist()[1] == "b"


def test_large_input_runs_off_the_gil() -> None:
    # Above the extension's 16 KiB threshold the GIL is released; the result is the same.
    documents = [orjson.dumps(event(event_id=str(i))) for i in range(2_000)]

    assert_same_as_python(documents)


def test_rejects_non_bytes_documents() -> None:
    with pytest.raises(TypeError):
        _core.archive_rows(["text is not bytes"])  # type: ignore[list-item]
