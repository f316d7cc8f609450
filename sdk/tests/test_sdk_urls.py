"""URL builders checked against a second, independent reading of the wire format.

The oracle here parses each built URL with urllib, recomputes the HMAC with the stdlib
`hmac` module and opens encrypted blobs with `cryptography`'s AESGCM. The same rules are
checked against the shared vectors and the Rust extension in the other url test modules.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import struct
from urllib.parse import parse_qsl, urlsplit

import pytest
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from hypothesis import given, settings
from hypothesis import strategies as st
from tracker_sdk import (
    build_encrypted_click_url,
    build_impression_url,
    build_postback_url,
    build_short_url,
    build_signed_click_url,
)

KEY = bytes(range(32))
SECRET = b"tenant-secret"


def query_pairs(url: str) -> list[tuple[str, str]]:
    return parse_qsl(urlsplit(url).query, keep_blank_values=True, strict_parsing=True)


def expected_signature(
    secret: bytes, prefix: str, destination: str, expires_at: int, covered: dict[str, str]
) -> str:
    message = b"tracker-click-v1"
    for part in (prefix.encode(), destination.encode()):
        message += struct.pack(">I", len(part)) + part
    message += struct.pack(">QI", expires_at, len(covered))
    for name in sorted(covered, key=str.encode):
        for part in (name.encode(), covered[name].encode()):
            message += struct.pack(">I", len(part)) + part
    return hmac.new(secret, message, hashlib.sha256).hexdigest()


def open_blob(key: bytes, d_value: str) -> tuple[str | None, int, int, list[tuple[str, str]], str]:
    prefix, _, text = d_value.rpartition(".")
    blob = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    version, key_id, nonce, sealed = blob[0], blob[1], blob[2:14], blob[14:]
    assert version == 1
    encoded_prefix = prefix.encode()
    associated = (
        b"tracker-d-v1" + bytes([len(encoded_prefix)]) + encoded_prefix + bytes([1, key_id])
    )
    plaintext = AESGCM(key).decrypt(nonce, sealed, associated)

    expires_at, count = struct.unpack_from(">QH", plaintext)
    offset = 10
    params = []
    for _ in range(count):
        pair = []
        for _ in range(2):
            (length,) = struct.unpack_from(">H", plaintext, offset)
            pair.append(plaintext[offset + 2 : offset + 2 + length].decode())
            offset += 2 + length
        params.append((pair[0], pair[1]))
    return prefix or None, key_id, expires_at, params, plaintext[offset:].decode()


def test_signed_url_layout():
    url = build_signed_click_url(
        "https://track.example.com/",
        SECRET,
        "https://shop.example/p?id=1&x=a b",
        key_prefix="acme1",
        params={"sub1": "news letter", "offer": "42"},
        signed_params=["offer"],
        expires_at=1_900_000_000,
    )
    assert url.startswith("https://track.example.com/t?url=")
    pairs = query_pairs(url)
    assert [name for name, _ in pairs] == ["url", "sig", "exp", "sp", "sub1", "offer"]
    query = dict(pairs)
    assert query["url"] == "https://shop.example/p?id=1&x=a b"
    assert query["exp"] == "1900000000"
    assert query["sp"] == "offer"
    assert query["sub1"] == "news letter"

    digest = expected_signature(SECRET, "acme1", query["url"], 1_900_000_000, {"offer": "42"})
    assert query["sig"] == f"acme1_{digest}"


def test_signed_url_without_prefix_is_bare_hex():
    url = build_signed_click_url("http://127.0.0.1:1", "global", "https://a.example/")
    sig = dict(query_pairs(url))["sig"]
    assert sig == expected_signature(b"global", "", "https://a.example/", 0, {})
    assert len(sig) == 64


def test_signed_params_sorted_by_bytes():
    params = {"b": "2", "a": "1", "é": "3", "Z": "4"}
    url = build_signed_click_url(
        "http://h.example",
        SECRET,
        "https://a.example/",
        key_prefix="k",
        params=params,
        signed_params=params.keys(),
    )
    query = dict(query_pairs(url))
    assert query["sp"] == "Z,a,b,é"
    assert query["sig"] == "k_" + expected_signature(SECRET, "k", "https://a.example/", 0, params)


def test_unsigned_params_do_not_change_signature():
    first = build_signed_click_url(
        "http://h.example", SECRET, "https://a.example/", params={"sub1": "x"}
    )
    second = build_signed_click_url(
        "http://h.example", SECRET, "https://a.example/", params={"sub1": "y"}
    )
    assert dict(query_pairs(first))["sig"] == dict(query_pairs(second))["sig"]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"destination": "javascript:alert(1)"}, "destination"),
        ({"destination": "ftp://a.example/"}, "destination"),
        ({"destination": "https:///nohost"}, "destination"),
        ({"destination": "https://a.example/" + "x" * 2048}, "maximum"),
        ({"key_prefix": "UPPER"}, "key_prefix"),
        ({"key_prefix": "a" * 33}, "key_prefix"),
        ({"key_prefix": ""}, "key_prefix"),
        ({"params": {"sig": "forged"}}, "reserved"),
        ({"params": {"url": "https://evil.example"}}, "reserved"),
        ({"params": [("a", "1"), ("a", "2")], "signed_params": ["a"]}, "exactly once"),
        ({"signed_params": ["missing"]}, "exactly once"),
        ({"params": {"a,b": "1"}, "signed_params": ["a,b"]}, "comma"),
        ({"expires_at": 0}, "expires_at"),
        ({"expires_at": -5}, "expires_at"),
        ({"expires_at": 2**63}, "expires_at"),
        ({"secret": b""}, "secret"),
    ],
)
def test_signed_url_rejects_bad_input(kwargs, message):
    arguments = {
        "base_url": "http://h.example",
        "secret": SECRET,
        "destination": "https://a.example/",
        **kwargs,
    }
    with pytest.raises(ValueError, match=message):
        build_signed_click_url(**arguments)


@pytest.mark.parametrize("base_url", ["h.example", "ftp://h.example", "http://h.example/?q=1", ""])
def test_builders_reject_bad_base_url(base_url):
    with pytest.raises(ValueError, match="base_url"):
        build_postback_url(base_url, "acme1")


def test_encrypted_url_opens_with_aesgcm():
    url = build_encrypted_click_url(
        "https://track.example.com",
        KEY,
        3,
        "https://shop.example/checkout?c=1",
        key_prefix="acme1",
        hidden_params={"payout": "1.50", "offer": "9"},
        params={"sub1": "feed"},
        expires_at=1_900_000_000,
    )
    pairs = query_pairs(url)
    assert [name for name, _ in pairs] == ["d", "sub1"]
    d_value = pairs[0][1]
    assert d_value.startswith("acme1.")
    assert "=" not in d_value

    prefix, key_id, expires_at, params, destination = open_blob(KEY, d_value)
    assert prefix == "acme1"
    assert key_id == 3
    assert expires_at == 1_900_000_000
    assert params == [("payout", "1.50"), ("offer", "9")]
    assert destination == "https://shop.example/checkout?c=1"


def test_encrypted_url_fixed_nonce_is_deterministic():
    nonce = b"\x01" * 12
    first = build_encrypted_click_url(
        "http://h.example", KEY.hex(), 0, "https://a.example/", nonce=nonce
    )
    second = build_encrypted_click_url(
        "http://h.example", KEY, 0, "https://a.example/", nonce=nonce
    )
    third = build_encrypted_click_url("http://h.example", KEY, 0, "https://a.example/")
    assert first == second
    assert first != third


def test_encrypted_prefix_is_authenticated():
    url = build_encrypted_click_url(
        "http://h.example", KEY, 1, "https://a.example/", key_prefix="acme1"
    )
    d_value = dict(query_pairs(url))["d"]
    swapped = "other." + d_value.split(".", 1)[1]
    with pytest.raises(InvalidTag):
        open_blob(KEY, swapped)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"key": b"short"}, "32 bytes"),
        ({"key_id": 256}, "key_id"),
        ({"key_id": -1}, "key_id"),
        ({"nonce": b"123"}, "nonce"),
        ({"params": {"d": "x"}}, "reserved"),
        ({"hidden_params": {"k": "v" * 70_000}}, "65535"),
        ({"destination": "data:text/html,hi"}, "destination"),
    ],
)
def test_encrypted_url_rejects_bad_input(kwargs, message):
    arguments = {
        "base_url": "http://h.example",
        "key": KEY,
        "key_id": 1,
        "destination": "https://a.example/",
        **kwargs,
    }
    with pytest.raises(ValueError, match=message):
        build_encrypted_click_url(**arguments)


def test_short_postback_impression_urls():
    assert build_short_url("http://h.example/", "tu_019c-aa", {"sub1": "x"}) == (
        "http://h.example/t/tu_019c-aa?sub1=x"
    )
    assert build_short_url("http://h.example", "tu_1") == "http://h.example/t/tu_1"
    assert build_postback_url("http://h.example", "acme1", {"click_id": "c 1"}) == (
        "http://h.example/p?key_prefix=acme1&click_id=c%201"
    )
    assert build_impression_url("http://h.example/base", "acme1", [("ad", "1"), ("ad", "2")]) == (
        "http://h.example/base/i?key_prefix=acme1&ad=1&ad=2"
    )


@pytest.mark.parametrize("tu_id", ["", "../admin", "tu 1", "tu/1", "x" * 129])
def test_short_url_rejects_bad_tu_id(tu_id):
    with pytest.raises(ValueError, match="tu_id"):
        build_short_url("http://h.example", tu_id)


def test_postback_rejects_key_prefix_param():
    with pytest.raises(ValueError, match="reserved"):
        build_postback_url("http://h.example", "acme1", {"key_prefix": "other"})


def test_params_must_be_strings():
    with pytest.raises(TypeError):
        build_postback_url("http://h.example", "acme1", {"n": 5})  # type: ignore[dict-item]


text = st.text(st.characters(blacklist_categories=("Cs",)), max_size=40)
names = text.filter(
    lambda name: name and name not in {"url", "sig", "exp", "sp"} and "," not in name
)
destinations = st.builds(
    lambda host, path: f"https://{host}.example/{path}",
    st.from_regex(r"[a-z0-9]{1,20}", fullmatch=True),
    text,
)


@settings(max_examples=200, deadline=None)
@given(
    destination=destinations,
    params=st.dictionaries(names, text, max_size=6),
    expires_at=st.one_of(st.none(), st.integers(1, 2**63 - 1)),
    prefix=st.one_of(st.none(), st.from_regex(r"[a-z0-9]{1,32}", fullmatch=True)),
    data=st.data(),
)
def test_signed_url_round_trip(destination, params, expires_at, prefix, data):
    covered_names = data.draw(
        st.sets(st.sampled_from(sorted(params))) if params else st.just(set())
    )
    url = build_signed_click_url(
        "http://h.example",
        SECRET,
        destination,
        key_prefix=prefix,
        params=params,
        signed_params=covered_names,
        expires_at=expires_at,
    )
    query = dict(query_pairs(url))
    assert query["url"] == destination
    covered = {name: params[name] for name in covered_names}
    digest = expected_signature(SECRET, prefix or "", destination, expires_at or 0, covered)
    assert query["sig"] == (digest if prefix is None else f"{prefix}_{digest}")
    for name, value in params.items():
        assert query[name] == value


@settings(max_examples=200, deadline=None)
@given(
    destination=destinations,
    hidden=st.lists(st.tuples(text.filter(bool), text), max_size=6, unique_by=lambda pair: pair[0]),
    expires_at=st.one_of(st.none(), st.integers(1, 2**63 - 1)),
    prefix=st.one_of(st.none(), st.from_regex(r"[a-z0-9]{1,32}", fullmatch=True)),
    key_id=st.integers(0, 255),
)
def test_encrypted_url_round_trip(destination, hidden, expires_at, prefix, key_id):
    url = build_encrypted_click_url(
        "http://h.example",
        KEY,
        key_id,
        destination,
        key_prefix=prefix,
        hidden_params=hidden,
        expires_at=expires_at,
    )
    opened = open_blob(KEY, dict(query_pairs(url))["d"])
    assert opened == (prefix, key_id, expires_at or 0, hidden, destination)


@pytest.mark.parametrize(
    ("builder", "path"), [(build_postback_url, "/p"), (build_impression_url, "/i")]
)
def test_signed_pixel_urls_cover_path(builder, path):
    url = builder(
        "http://h.example",
        "acme1",
        {"click_id": "c1", "sub1": "x"},
        secret=SECRET,
        signed_params=["click_id"],
        expires_at=1_900_000_000,
    )
    pairs = query_pairs(url)
    assert [name for name, _ in pairs] == ["key_prefix", "sig", "exp", "sp", "click_id", "sub1"]
    query = dict(pairs)
    digest = expected_signature(SECRET, "acme1", path, 1_900_000_000, {"click_id": "c1"})
    assert query["sig"] == f"acme1_{digest}"
    assert query["sp"] == "click_id"


@pytest.mark.parametrize("name", ["key_prefix", "sig", "exp", "sp"])
def test_pixel_urls_reject_reserved_params(name):
    with pytest.raises(ValueError, match="reserved"):
        build_impression_url("http://h.example", "acme1", {name: "x"})


def test_pixel_signing_options_need_secret():
    with pytest.raises(ValueError, match="secret"):
        build_postback_url("http://h.example", "acme1", {"a": "1"}, signed_params=["a"])
