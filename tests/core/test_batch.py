"""BatchParser: accepted events, per-event rejections and hostile bodies."""

from __future__ import annotations

import json
import threading
import time

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from tracker import _core

from .conftest import REQUEST


def event(**fields) -> dict:
    base = {"event_type": "click", "params": {"key_prefix": "acme", "sub": "1"}}
    base.update(fields)
    return base


def parse(parser: _core.BatchParser, body) -> _core.ParsedBatch:
    if not isinstance(body, bytes):
        body = orjson.dumps(body)
    return parser.parse(body, **REQUEST)


def decoded(result: _core.ParsedBatch) -> list[dict]:
    events = []
    for _, _, blob in result.records:
        events.extend(orjson.loads(document) for document in _core.decode_record_batch(blob))
    return events


def test_accepts_array_and_events_object(parser: _core.BatchParser) -> None:
    for body in ([event(), event()], {"events": [event(), event()]}):
        result = parse(parser, body)
        assert result.accepted == 2
        assert result.rejected == []
        assert len(result.event_ids) == 2


def test_stamps_request_fields_and_overrides(parser: _core.BatchParser) -> None:
    before = _core.now_ms()
    result = parse(parser, [event(), event(ip="198.51.100.1", user_agent="server-sdk/1")])
    first, second = sorted(decoded(result), key=lambda item: item["event_id"])
    assert first["ip"] == REQUEST["ip"]
    assert second["ip"] == "198.51.100.1"
    assert second["user_agent"] == "server-sdk/1"
    assert second["request_path"] == "/batch"
    assert before <= first["timestamp"] <= _core.now_ms()
    assert first["params"] == {"key_prefix": "acme", "sub": "1"}


def test_client_event_id_kept_for_retries(parser: _core.BatchParser) -> None:
    event_id = "017F22E2-79B0-7CC3-98C4-DC0C0C07398F"
    result = parse(parser, [event(event_id=event_id)])
    assert result.event_ids == [event_id.lower()]
    assert decoded(result)[0]["event_id"] == event_id.lower()


def test_groups_by_partition(parser: _core.BatchParser) -> None:
    body = [event(params={"key_prefix": tenant}) for tenant in ("acme", "beta", "t0", "acme")]
    result = parse(parser, body)
    assert result.accepted == 4
    for partition, count, blob in result.records:
        documents = [orjson.loads(document) for document in _core.decode_record_batch(blob)]
        assert len(documents) == count
        for document in documents:
            assert _core.partition_for(document["params"]["key_prefix"], 8) == partition
    partitions = [partition for partition, _, _ in result.records]
    assert partitions == sorted(set(partitions))
    assert sum(count for _, count, _ in result.records) == 4


def test_event_ids_follow_input_order(parser: _core.BatchParser) -> None:
    body = [event(params={"key_prefix": "acme", "n": str(i)}) for i in range(50)]
    result = parse(parser, body)
    by_id = {item["event_id"]: item["params"]["n"] for item in decoded(result)}
    assert [by_id[event_id] for event_id in result.event_ids] == [str(i) for i in range(50)]


@pytest.mark.parametrize(
    ("bad_event", "field"),
    [
        ({"params": {"key_prefix": "acme"}}, "event_type"),
        (event(event_type="bad type"), "event_type"),
        (event(event_type=5), "event_type"),
        ({"event_type": "click"}, "params"),
        (event(params=["key_prefix", "acme"]), "params"),
        (event(params={"sub": "1"}), "params.key_prefix"),
        (event(params={"key_prefix": "nobody"}), "params.key_prefix"),
        (event(params={"key_prefix": "ACME"}), "params.key_prefix"),
        (event(params={"key_prefix": "acme", "n": 5}), "params.n"),
        (event(params={"key_prefix": "acme", "n": None}), "params.n"),
        (event(params={"key_prefix": "acme", "n": {"deep": "x"}}), "params.n"),
        (event(params={"key_prefix": "acme", "big": "v" * 3000}), "params.big"),
        (event(params={"key_prefix": "acme", **{f"p{i}": "v" for i in range(64)}}), "params"),
        (event(event_id="nope"), "event_id"),
        (event(ip=None), "ip"),
        (event(referer=["x"]), "referer"),
        (event(timestamp=1), "timestamp"),
        (event(request_host="evil"), "request_host"),
        (event(color="red"), "color"),
        ("just a string", "event"),
        ([event()], "event"),
        (None, "event"),
    ],
)
def test_bad_event_rejected_others_kept(parser: _core.BatchParser, bad_event, field: str) -> None:
    result = parse(parser, [event(), bad_event, event()])
    assert result.accepted == 2
    assert len(result.rejected) == 1
    rejection = result.rejected[0]
    assert (rejection.index, rejection.field) == (1, field)
    assert rejection.reason
    assert len(decoded(result)) == 2


@pytest.mark.parametrize(
    ("raw", "field"),
    [
        (b'[{"event_type":"a","event_type":"b","params":{"key_prefix":"acme"}}]', "event_type"),
        (b'[{"event_type":"a","params":{"key_prefix":"acme","k":"1","k":"2"}}]', "params.k"),
        (
            b'[{"event_type":"a","params":{"key_prefix":"acme"},"params":{"key_prefix":"acme"}}]',
            "params",
        ),
    ],
)
def test_duplicate_keys_rejected(parser: _core.BatchParser, raw: bytes, field: str) -> None:
    result = parse(parser, raw)
    assert result.accepted == 0
    assert result.rejected[0].field == field
    assert "twice" in result.rejected[0].reason


def test_many_params_duplicate_detected(parser: _core.BatchParser) -> None:
    keys = ",".join(f'"p{i}":"v"' for i in range(40))
    raw = f'[{{"event_type":"a","params":{{"key_prefix":"acme",{keys},"p39":"w"}}}}]'.encode()
    result = parse(parser, raw)
    assert result.rejected[0].field == "params.p39"


@pytest.mark.parametrize(
    ("raw", "field", "reason"),
    [
        (b"", "body", "not valid JSON"),
        (b"not json", "body", "not valid JSON"),
        (b'[{"event_type":"a"}', "body", "not valid JSON"),
        (b"[] []", "body", "not valid JSON"),
        (b"[NaN]", "body", "not valid JSON"),
        (
            b'[{"event_type":"a","params":{"key_prefix":"acme","n":Infinity}}]',
            "body",
            "not valid JSON",
        ),
        (b'[{"event_type":"a","x":1e999}]', "body", "not valid JSON"),
        (b'["\xff\xfe"]', "body", "UTF-8"),
        (b'["\xed\xa0\x80"]', "body", "UTF-8"),
        (b'"events"', "body", "array"),
        (b"42", "body", "array"),
        (b"null", "body", "array"),
        (b'{"events": {}}', "events", "array"),
        (b'{"events": "x"}', "events", "array"),
        (b"{}", "events", "required"),
        (b'{"events": [], "events": []}', "events", "twice"),
        (b'{"events": [], "extra": 1}', "extra", "only field"),
    ],
)
def test_unusable_body_raises_batch_error(parser, raw: bytes, field: str, reason: str) -> None:
    with pytest.raises(_core.BatchError, match=reason) as raised:
        parse(parser, raw)
    assert raised.value.field == field


def test_nesting_10000_deep_rejected(parser: _core.BatchParser) -> None:
    for raw in (b"[" * 10_000 + b"]" * 10_000, b'[{"x":' * 5_000 + b"1" + b"}]" * 5_000):
        with pytest.raises(_core.BatchError, match="deeper than 64") as raised:
            parse(parser, raw)
        assert raised.value.field == "body"


def test_nesting_within_limit_is_event_rejection(parser: _core.BatchParser) -> None:
    result = parse(parser, b"[" + b"[" * 30 + b"]" * 30 + b"]")
    assert result.rejected[0].field == "event"


def test_too_many_events(limits: _core.EventLimits) -> None:
    parser = _core.BatchParser(
        limits=limits,
        max_events=10_000,
        max_body_bytes=64 << 20,
        partitions=4,
        known_tenants=["acme"],
    )
    assert parse(parser, [event()] * 10_000).accepted == 10_000
    with pytest.raises(_core.BatchError, match="more than 10000") as raised:
        parse(parser, [event()] * 10_001)
    assert raised.value.field == "events"


def test_body_over_limit_rejected(parser: _core.BatchParser) -> None:
    body = b"[" + b" " * (50 * 1024 * 1024) + b"]"
    with pytest.raises(_core.BatchError, match="maximum") as raised:
        parse(parser, body)
    assert raised.value.field == "body"


def test_empty_array_accepts_nothing(parser: _core.BatchParser) -> None:
    result = parse(parser, b"[]")
    assert (result.accepted, result.rejected, result.records) == (0, [], [])


def test_parser_arguments_checked(limits: _core.EventLimits) -> None:
    for name in ("max_events", "max_body_bytes", "partitions"):
        kwargs = {"max_events": 1, "max_body_bytes": 1, "partitions": 1, name: 0}
        with pytest.raises(ValueError, match=name):
            _core.BatchParser(limits=limits, known_tenants=[], **kwargs)
    with pytest.raises(TypeError):
        _core.BatchParser(
            limits=limits, max_events=1, max_body_bytes=1, partitions=1, known_tenants=[1]
        )


def test_body_must_be_bytes_or_str(parser: _core.BatchParser) -> None:
    for body in (None, 1, bytearray(b"[]"), memoryview(b"[]")):
        with pytest.raises(TypeError, match="bytes or str"):
            parser.parse(body, **REQUEST)  # type: ignore[arg-type]


def test_str_body_parsed_like_bytes(parser: _core.BatchParser) -> None:
    events = [event(params={"key_prefix": "acme", "city": "Zürich"}), {"event_type": 1}]
    body = orjson.dumps(events)

    from_bytes = parser.parse(body, **REQUEST)
    from_text = parser.parse(body.decode("utf-8"), **REQUEST)

    assert from_text.accepted == from_bytes.accepted == 1
    assert [(r.index, r.field) for r in from_text.rejected] == [(1, "event_type")]
    assert decoded(from_text)[0]["params"] == decoded(from_bytes)[0]["params"]


def test_str_body_with_lone_surrogate_rejected(parser: _core.BatchParser) -> None:
    with pytest.raises(_core.BatchError, match="lone surrogate") as raised:
        parser.parse('[{"event_type": "' + chr(0xD800) + '"}]', **REQUEST)
    assert raised.value.field == "body"


def test_escaped_strings_round_trip(parser: _core.BatchParser) -> None:
    value = 'quote " backslash \\ newline \n tab \t emoji \U0001f600 nul \x00'
    body = json.dumps([event(params={"key_prefix": "acme", "v": value}, user_agent=value)]).encode()
    document = decoded(parse(parser, body))[0]
    assert document["params"]["v"] == value
    assert document["user_agent"] == value


FIELD_TEXT = st.text(st.characters(exclude_categories=("Cs",)), max_size=12)
PARAM_NAMES = FIELD_TEXT.filter(lambda name: name and name != "key_prefix")
OVERRIDES = ("ip", "user_agent", "referer", "accept_language")
STRING_EVENTS = st.fixed_dictionaries(
    {
        "event_type": st.from_regex(r"[A-Za-z0-9_.:-]{1,16}", fullmatch=True),
        "params": st.dictionaries(PARAM_NAMES, FIELD_TEXT, max_size=5).map(
            lambda params: {"key_prefix": "acme", **params}
        ),
    },
    optional={field: FIELD_TEXT for field in OVERRIDES},
)


def expected_line(event: dict, event_id: str, timestamp: int) -> bytes:
    """Return the JSON line stdlib json writes for one stamped event, in field order."""
    document = {"event_id": event_id, "event_type": event["event_type"], "timestamp": timestamp}
    for field in OVERRIDES:
        document[field] = event.get(field, REQUEST[field])
    document["request_path"] = REQUEST["request_path"]
    document["request_host"] = REQUEST["request_host"]
    document["params"] = event["params"]
    return json.dumps(document, ensure_ascii=False, separators=(",", ":")).encode()


@given(events=st.lists(STRING_EVENTS, min_size=1, max_size=6), ensure_ascii=st.booleans())
def test_lines_match_stdlib_json_bytes(parser, events: list[dict], ensure_ascii: bool) -> None:
    body = json.dumps(events, ensure_ascii=ensure_ascii).encode()
    result = parse(parser, body)
    assert result.rejected == []
    assert result.accepted == len(events)
    lines = [line for _, _, blob in result.records for line in _core.decode_record_batch(blob)]
    events_by_id = dict(zip(result.event_ids, events, strict=True))
    for line in lines:
        stamped = json.loads(line)
        event = events_by_id[stamped["event_id"]]
        assert line == expected_line(event, stamped["event_id"], stamped["timestamp"])


def test_overrides_cut_at_character_boundary() -> None:
    small = _core.EventLimits(max_field_len=5)
    parser = _core.BatchParser(
        limits=small, max_events=10, max_body_bytes=1 << 20, partitions=2, known_tenants=["acme"]
    )
    for escaped in (False, True):
        body = json.dumps([event(user_agent="abcé€x", referer="a\nbcdef")], ensure_ascii=escaped)
        document = decoded(parse(parser, body.encode()))[0]
        assert document["user_agent"] == "abcé"
        assert document["referer"] == "a\nbcd"
        assert document["ip"] == REQUEST["ip"][:5]


JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=10),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=20,
)


@given(events=st.lists(JSON_VALUES | st.builds(event), max_size=8))
def test_random_bodies_end_in_outcome_or_batch_error(parser, events) -> None:
    result = parse(parser, events)
    assert result.accepted + len(result.rejected) == len(events)
    assert len(decoded(result)) == result.accepted


@given(raw=st.binary(max_size=300))
def test_random_bytes_never_crash(parser: _core.BatchParser, raw: bytes) -> None:
    try:
        parse(parser, raw)
    except _core.BatchError as error:
        assert error.field


@given(data=st.data())
def test_mutated_body_never_crashes(parser: _core.BatchParser, data: st.DataObject) -> None:
    body = bytearray(orjson.dumps([event(), event(ip="1.2.3.4")]))
    for _ in range(data.draw(st.integers(min_value=1, max_value=5))):
        position = data.draw(st.integers(min_value=0, max_value=len(body) - 1))
        body[position] = data.draw(st.integers(min_value=0, max_value=255))
    try:
        result = parse(parser, bytes(body))
    except _core.BatchError:
        return
    assert result.accepted + len(result.rejected) <= 2


def test_parse_releases_gil(limits: _core.EventLimits) -> None:
    parser = _core.BatchParser(
        limits=limits,
        max_events=100_000,
        max_body_bytes=256 << 20,
        partitions=4,
        known_tenants=["acme"],
    )
    body = orjson.dumps([event()] * 100_000)
    ticks = 0
    stop = threading.Event()

    def count() -> None:
        nonlocal ticks
        while not stop.is_set():
            ticks += 1

    counter = threading.Thread(target=count)
    counter.start()
    time.sleep(0.01)
    try:
        before = ticks
        started = time.perf_counter()
        parse(parser, body)
        elapsed = time.perf_counter() - started
        during = ticks - before
    finally:
        stop.set()
        counter.join()
    # With the GIL held for the whole parse, the counter thread could only run at
    # the interpreter's switch interval (5 ms), a handful of times at most.
    assert elapsed > 0.005
    assert during > 1000
