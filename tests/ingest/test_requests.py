"""Query decoding, limits and client address resolution, without a server."""

from __future__ import annotations

import ipaddress

import pytest

from tracker.ingest.errors import STATUS_BY_CODE, IngestError
from tracker.ingest.requests import RequestLimits, client_ip, decode_component, read_query

LIMITS = RequestLimits(
    max_url_bytes=200,
    max_header_bytes=1000,
    max_params=5,
    max_param_key_len=10,
    max_param_value_len=20,
)
TRUSTED = (ipaddress.ip_network("10.0.0.0/8"), ipaddress.ip_network("fd00::/8"))


@pytest.mark.parametrize(
    ("raw", "decoded"),
    [
        ("plain", "plain"),
        ("a+b", "a b"),
        ("a%2Bb", "a+b"),
        ("%E2%82%AC", "€"),
        ("%41%62", "Ab"),
        ("", ""),
    ],
)
def test_decode_component(raw, decoded):
    assert decode_component(raw, "f") == decoded


@pytest.mark.parametrize("raw", ["%", "%z1", "%1", "a%G0", "%C3%28", "%ED%A0%80", "%FF"])
def test_decode_component_rejects(raw):
    with pytest.raises(IngestError) as caught:
        decode_component(raw, "name")
    assert caught.value.code == "invalid_encoding"
    assert caught.value.field == "name"


def test_read_query_limits():
    with pytest.raises(IngestError, match="longer than 200"):
        read_query({"a": ["x" * 300]}, "/t", LIMITS)
    with pytest.raises(IngestError, match="at most 5"):
        read_query({f"k{i}": ["v"] for i in range(6)}, "/t", LIMITS)
    with pytest.raises(IngestError) as caught:
        read_query({"k": ["v" * 21]}, "/t", LIMITS)
    assert caught.value.code == "param_too_long"


def test_read_query_merges_encoded_duplicates():
    query = read_query({"a": ["1"], "%61": ["2"]}, "/t", LIMITS)
    assert query.values["a"] == ["1", "2"]
    with pytest.raises(IngestError) as caught:
        query.single("a")
    assert caught.value.code == "duplicate_param"
    assert query.pairs() == [("a", "2")]


@pytest.mark.parametrize(
    ("raw", "code", "field", "message"),
    [
        ({"a": ["x" * 300]}, "url_too_long", "url", "longer than 200 bytes"),
        ({f"k{i}": ["v"] for i in range(6)}, "too_many_params", "query", "has 6 query"),
        ({"k" * 11: ["v"]}, "param_too_long", "k" * 11, "name is longer than 10"),
        ({"k": ["v" * 21]}, "param_too_long", "k", "'k' is longer than 20"),
        ({"k": ["%zz"]}, "invalid_encoding", "k", "invalid percent-escape"),
        ({"%FF": ["v"]}, "invalid_encoding", "%FF", "not valid UTF-8"),
        ({"%6B": ["%FF"]}, "invalid_encoding", "k", "'k' is not valid UTF-8"),
    ],
)
def test_read_query_errors(raw, code, field, message):
    with pytest.raises(IngestError) as caught:
        read_query(raw, "/t", LIMITS)
    assert caught.value.code == code
    assert caught.value.field == field
    assert message in str(caught.value)


def test_read_query_url_limit_checked_first():
    """An oversized URL is reported as such even when it also has a bad escape."""
    with pytest.raises(IngestError) as caught:
        read_query({"a": ["%zz" + "x" * 300]}, "/t", LIMITS)
    assert caught.value.code == "url_too_long"


def test_read_query_counts_characters():
    """Value limits count decoded characters, not UTF-8 bytes."""
    assert read_query({"k": ["é" * 20]}, "/t", LIMITS).values == {"k": ["é" * 20]}
    assert read_query({"k": ["%C3%A9" * 20]}, "/t", LIMITS).values == {"k": ["é" * 20]}
    with pytest.raises(IngestError) as caught:
        read_query({"k": ["%C3%A9" * 21]}, "/t", LIMITS)
    assert caught.value.code == "param_too_long"


def test_read_query_drops_empty_names():
    query = read_query({"": ["%zz"], "a": ["1+2"]}, "/t", LIMITS)
    assert query.values == {"a": ["1 2"]}


def test_read_query_keeps_plain_text_objects():
    """Text without escapes comes back as the same object, so nothing is copied."""
    value = "plain-value"
    query = read_query({"a": [value]}, "/t", LIMITS)
    assert query.values["a"][0] is value


@pytest.mark.parametrize("raw", [{"a": "not-a-list"}, {"a": [1]}, {1: ["v"]}])
def test_read_query_rejects_wrong_types(raw):
    with pytest.raises(TypeError):
        read_query(raw, "/t", LIMITS)


@pytest.mark.parametrize(
    ("peer", "xff", "forwarded", "expected"),
    [
        ("203.0.113.5", "1.2.3.4", None, "203.0.113.5"),
        ("10.0.0.1", "1.2.3.4", None, "1.2.3.4"),
        ("10.0.0.1", "1.2.3.4, 10.0.0.9", None, "1.2.3.4"),
        ("10.0.0.1", "6.6.6.6, 1.2.3.4, 10.0.0.9", None, "1.2.3.4"),
        ("10.0.0.1", "10.0.0.5, 10.0.0.9", None, "10.0.0.5"),
        ("10.0.0.1", "1.2.3.4:5678", None, "1.2.3.4"),
        ("10.0.0.1", "[2001:db8::1]:443", None, "2001:db8::1"),
        ("10.0.0.1", "garbage, 10.0.0.9", None, "10.0.0.9"),
        ("10.0.0.1", None, 'for="[2001:db8::2]:80"', "2001:db8::2"),
        ("10.0.0.1", None, "for=1.2.3.4;proto=https, for=10.0.0.3", "1.2.3.4"),
        ("10.0.0.1", None, "for=unknown", "10.0.0.1"),
        ("10.0.0.1", None, None, "10.0.0.1"),
        ("fd00::1", "2001:db8::3", None, "2001:db8::3"),
        ("[fd00::1]:9000", "2001:db8::3", None, "2001:db8::3"),
        ("::ffff:10.0.0.1", "1.2.3.4", None, "1.2.3.4"),
        ("2001:db8::9", "1.2.3.4", None, "2001:db8::9"),
    ],
)
def test_client_ip(peer, xff, forwarded, expected):
    assert client_ip(peer, xff, forwarded, TRUSTED) == expected


def test_client_ip_without_trusted_proxies_ignores_headers():
    assert client_ip("10.0.0.1", "1.2.3.4", "for=5.6.7.8", ()) == "10.0.0.1"


def test_error_codes_map_to_statuses():
    assert STATUS_BY_CODE
    assert all(400 <= status < 500 or status == 503 for status in STATUS_BY_CODE.values())
    with pytest.raises(KeyError):
        IngestError("no_such_code", "message")
