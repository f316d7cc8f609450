"""Event columns: the extension's validation and fields against orjson plus `event_problem`."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.consumers.conftest import make_event
from tracker._core import read_event_columns
from tracker.consumers.columns import read_columns
from tracker.consumers.events import event_problem
from tracker.consumers.runtime import NOT_AN_OBJECT

FIELDS = (
    "event_id",
    "event_type",
    "ip",
    "user_agent",
    "referer",
    "accept_language",
    "request_path",
    "request_host",
    "params.key_prefix",
    "params.tu_id",
)


def expected(document: bytes) -> tuple[str | None, dict[str, Any] | None]:
    """Return (problem, fields) as decoding with orjson and `event_problem` decide."""
    try:
        event = orjson.loads(document)
    except orjson.JSONDecodeError:
        return NOT_AN_OBJECT, None
    if not isinstance(event, dict):
        return NOT_AN_OBJECT, None
    problem = event_problem(event)
    if problem is not None:
        return problem, None
    fields: dict[str, Any] = {"timestamp": event["timestamp"]}
    for field in FIELDS:
        if field.startswith("params."):
            fields[field] = event["params"].get(field.removeprefix("params."), "")
        else:
            fields[field] = event.get(field, "")
    return None, fields


def assert_matches_reference(documents: list[bytes]) -> None:
    columns = read_columns(documents, FIELDS)
    for index, document in enumerate(documents):
        problem, fields = expected(document)
        assert columns.problems.get(index) == problem, document[:300]
        assert bool(columns.valid[index]) == (problem is None)
        if fields is None:
            continue
        assert int(columns.timestamps[index]) == fields["timestamp"]
        for field in FIELDS:
            column = columns[field]
            assert column.values[column.codes[index]] == fields[field], field


def event_bytes(**changes: Any) -> bytes:
    event = make_event("acme", tu_id="tu_1")
    event.update(changes)
    return orjson.dumps(event)


def with_params(params: str) -> bytes:
    """An event whose params object is the given JSON text, to write repeated keys."""
    head = orjson.dumps(make_event("acme"))
    start = head.index(b'"params":')
    return head[:start] + b'"params":' + params.encode() + b"}"


VALID = make_event("acme", tu_id="tu_1")
CASES = {
    "valid": event_bytes(),
    "valid with escapes and spaces": json.dumps(
        {**VALID, "user_agent": "Mozilla/5.0 \u00e9\u4e2d \U0001f600"}, ensure_ascii=True, indent=1
    ).encode(),
    "missing optional strings": orjson.dumps(
        {key: VALID[key] for key in ("event_id", "event_type", "timestamp", "params")}
    ),
    "uppercase uuid": event_bytes(event_id=VALID["event_id"].upper()),
    "short uuid": event_bytes(event_id=VALID["event_id"][:-1]),
    "event_id number": event_bytes(event_id=5),
    "empty event_type": event_bytes(event_type=""),
    "event_type 65 chars": event_bytes(event_type="a" * 65),
    "event_type non-ascii": event_bytes(event_type="cl\u00efck"),
    "float timestamp": event_bytes(timestamp=1_770_704_294_008.0),
    "bool timestamp": event_bytes(timestamp=True),
    "timestamp too old": event_bytes(timestamp=946_684_799_999),
    "timestamp at upper bound": event_bytes(timestamp=4_102_444_800_000),
    "timestamp beyond u64": event_bytes().replace(b"1770704294008", b"18446744073709551616"),
    "ip null": event_bytes(ip=None),
    "referer list": event_bytes(referer=["a"]),
    "user_agent 2048 multibyte": event_bytes(user_agent="\u00e9" * 2048),
    "user_agent 2049 multibyte": event_bytes(user_agent="\u00e9" * 2049),
    "params list": event_bytes(params=["acme"]),
    "params missing": orjson.dumps({k: v for k, v in VALID.items() if k != "params"}),
    "params 64 entries": event_bytes(
        params={"key_prefix": "acme", **{f"k{i}": "v" for i in range(63)}}
    ),
    "params 65 entries": event_bytes(
        params={"key_prefix": "acme", **{f"k{i}": "v" for i in range(64)}}
    ),
    "param key 129 chars": event_bytes(params={"key_prefix": "acme", "k" * 129: "v"}),
    "param value number": event_bytes(params={"key_prefix": "acme", "\u00e9" * 60: 1}),
    "param value 2049 chars": event_bytes(params={"key_prefix": "acme", "v": "x" * 2049}),
    "key_prefix uppercase": event_bytes(params={"key_prefix": "Acme"}),
    "key_prefix 33 chars": event_bytes(params={"key_prefix": "a" * 33}),
    "repeated param key, last valid": with_params('{"key_prefix":"x!","key_prefix":"acme"}'),
    "repeated param key, last invalid": with_params('{"key_prefix":"acme","key_prefix":5}'),
    "repeated top-level member": event_bytes()[:-1] + b',"ip":"198.51.100.1","ip":7}',
    "deep nesting in extra member": event_bytes()[:-1]
    + b',"extra":'
    + b"[" * 300
    + b"]" * 300
    + b"}",
    "nesting past orjson's limit": event_bytes()[:-1] + b',"x":' + b"[" * 1100 + b"]" * 1100 + b"}",
    "array": b"[1, 2]",
    "string": b'"event"',
    "invalid json": b'{"event_id": ',
    "trailing garbage": event_bytes() + b" x",
    "lone surrogate": event_bytes(user_agent="a").replace(b'"a"', b'"\\ud800"'),
}


@pytest.mark.parametrize("name", list(CASES))
def test_columns_match_reference(name: str) -> None:
    assert_matches_reference([CASES[name]])


def test_columns_match_reference_in_one_batch() -> None:
    assert_matches_reference(list(CASES.values()))


def test_columns_are_dictionary_encoded() -> None:
    documents = [event_bytes(ip=ip) for ip in ("a", "b", "a", "c", "b")] + [b"[]"]

    columns = read_columns(documents, ["ip"])

    assert columns["ip"].values[:3] == ["a", "b", "c"]
    assert columns["ip"].codes[:5].tolist() == [0, 1, 0, 2, 1]
    assert columns["ip"].decoded()[:5] == ["a", "b", "a", "c", "b"]
    assert columns.problems == {5: NOT_AN_OBJECT}
    assert columns.valid.tolist() == [True] * 5 + [False]
    assert columns.timestamps.dtype == np.int64


def test_read_event_columns_rejects_unknown_field() -> None:
    with pytest.raises(ValueError, match="unknown event field 'cookie'"):
        read_event_columns([event_bytes()], ["cookie"])


def test_column_rejects_field_not_requested() -> None:
    columns = read_event_columns([event_bytes()], ["ip"])

    with pytest.raises(ValueError, match="was not requested"):
        columns.column("user_agent")


text = st.text(max_size=12) | st.sampled_from(["acme", "click", "", "a" * 2049])
values = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.floats(allow_nan=False)
    | text
)
mutation = st.tuples(
    st.sampled_from(
        [
            "event_id",
            "event_type",
            "timestamp",
            "ip",
            "user_agent",
            "referer",
            "params",
            "params.key_prefix",
            "params.tu_id",
            "params.other",
        ]
    ),
    values | st.lists(text, max_size=2) | st.dictionaries(text, text, max_size=3),
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.lists(mutation, max_size=3), min_size=1, max_size=8), st.booleans())
def test_columns_match_reference_on_mutated_events(
    mutations: list[list[tuple[str, Any]]], spaced: bool
) -> None:
    documents = []
    for changes in mutations:
        event = make_event("acme", tu_id="tu_1")
        for field, value in changes:
            if field.startswith("params.") and isinstance(event["params"], dict):
                event["params"][field.removeprefix("params.")] = value
            elif not field.startswith("params."):
                event[field] = value
        if spaced:
            # json escapes non-ASCII and adds whitespace, unlike orjson.
            documents.append(json.dumps(event, indent=1).encode())
        else:
            documents.append(orjson.dumps(event))

    assert_matches_reference(documents)


MUTATION_BYTES = b'{}[]",:\\u0123456789abcdefE .-\x00\xff\xc3\xa9tnrl'


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.sampled_from(list(CASES.values())),
    st.lists(
        st.tuples(st.integers(min_value=0), st.sampled_from(list(MUTATION_BYTES)), st.booleans()),
        min_size=1,
        max_size=4,
    ),
)
def test_columns_match_reference_on_mutated_bytes(
    document: bytes, edits: list[tuple[int, int, bool]]
) -> None:
    mutated = bytearray(document)
    for position, byte, insert in edits:
        index = position % (len(mutated) + 1)
        if insert or index == len(mutated):
            mutated.insert(index, byte)
        else:
            mutated[index] = byte

    assert_matches_reference([bytes(mutated)])
