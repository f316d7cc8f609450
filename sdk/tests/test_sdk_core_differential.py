"""SDK builders against the platform's Rust extension `tracker._core`, which the server uses.

The SDK must not depend on the platform, so these tests are the guard that both sides
produce and accept the same bytes. They need the extension built into the environment.
"""

from __future__ import annotations

import time
from urllib.parse import parse_qsl, urlsplit

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from tracker_sdk import (
    build_encrypted_click_url,
    build_postback_url,
    build_signed_click_url,
)
from tracker_sdk._uuid7 import uuid7

from tracker import _core

KEY = bytes(range(100, 132))
SECRET = b"differential-secret"

text = st.text(st.characters(blacklist_categories=("Cs",)), max_size=30)
names = text.filter(
    lambda name: name and name not in {"url", "sig", "exp", "sp"} and "," not in name
)
prefixes = st.one_of(st.none(), st.from_regex(r"[a-z0-9]{1,32}", fullmatch=True))
expiries = st.one_of(st.none(), st.integers(1, 2**63 - 1))
destinations = st.builds(
    lambda host, path: f"https://{host}.example/{path}",
    st.from_regex(r"[a-z0-9]{1,20}", fullmatch=True),
    text,
)


def query(url: str) -> dict[str, str]:
    return dict(parse_qsl(urlsplit(url).query, keep_blank_values=True))


@settings(max_examples=300, deadline=None)
@given(
    destination=destinations,
    params=st.dictionaries(names, text, max_size=5),
    prefix=prefixes,
    expires_at=expiries,
    data=st.data(),
)
def test_signature_matches_core(destination, params, prefix, expires_at, data):
    covered_names = data.draw(
        st.sets(st.sampled_from(sorted(params))) if params else st.just(set())
    )
    covered = [(name, params[name]) for name in covered_names]
    url = build_signed_click_url(
        "http://h.example",
        SECRET,
        destination,
        key_prefix=prefix,
        params=params,
        signed_params=covered_names,
        expires_at=expires_at,
    )
    sig = query(url)["sig"]

    assert sig == _core.sign_click(
        SECRET, destination, key_prefix=prefix, params=covered, expires_at=expires_at
    )
    matched = _core.verify_click(
        [b"old", SECRET], destination, sig, params=covered, expires_at=expires_at, now=0
    )
    assert matched == 1


@settings(max_examples=200, deadline=None)
@given(
    destination=destinations,
    hidden=st.lists(st.tuples(text.filter(bool), text), max_size=5, unique_by=lambda pair: pair[0]),
    prefix=prefixes,
    expires_at=expiries,
    key_id=st.integers(0, 255),
    nonce=st.binary(min_size=12, max_size=12),
)
def test_encrypted_blob_matches_core(destination, hidden, prefix, expires_at, key_id, nonce):
    url = build_encrypted_click_url(
        "http://h.example",
        KEY,
        key_id,
        destination,
        key_prefix=prefix,
        hidden_params=hidden,
        expires_at=expires_at,
        nonce=nonce,
    )
    d_value = query(url)["d"]

    assert d_value == _core.encrypt_destination(
        KEY,
        key_id,
        destination,
        key_prefix=prefix,
        params=hidden,
        expires_at=expires_at,
        nonce=nonce,
    )
    assert _core.blob_header(d_value) == (prefix, key_id)
    opened = _core.decrypt_destination(KEY, d_value, now=0)
    assert opened.destination == destination
    assert opened.params == hidden
    assert opened.expires_at == expires_at
    assert opened.key_prefix == prefix
    assert opened.key_id == key_id


def test_signed_postback_verifies_with_core():
    url = build_postback_url(
        "http://h.example",
        "acme1",
        {"click_id": "c-1", "sub1": "x"},
        secret=SECRET,
        signed_params=["click_id"],
    )
    sig = query(url)["sig"]
    assert (
        _core.verify_click([SECRET], "/p", sig, params=[("click_id", "c-1")], now=int(time.time()))
        == 0
    )


def test_sdk_uuid7_readable_by_core():
    before = _core.now_ms()
    event_ids = [uuid7() for _ in range(1000)]
    after = _core.now_ms()

    timestamps = [_core.uuid7_timestamp_ms(event_id) for event_id in event_ids]
    assert all(before <= stamp <= after + 1 for stamp in timestamps)
    assert event_ids == sorted(event_ids)


def test_duplicate_hidden_param_rejected_by_both():
    hidden = [("a", "1"), ("a", "2")]
    with pytest.raises(ValueError, match="twice"):
        build_encrypted_click_url(
            "http://h.example", KEY, 1, "https://a.example/", hidden_params=hidden
        )
    with pytest.raises(_core.CodecError, match="twice"):
        _core.encrypt_destination(KEY, 1, "https://a.example/", params=hidden)
