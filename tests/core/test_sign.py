"""Signed click URLs: differential tests against stdlib hmac and hostile signatures."""

from __future__ import annotations

import hashlib
import hmac
import string

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tracker import _core

from .codec_reference import python_click_message

SECRET = b"s" * 32
PREFIXES = st.text(alphabet=string.ascii_lowercase + string.digits, min_size=1, max_size=32)
PARAM_NAMES = st.text(min_size=1, max_size=12).filter(
    lambda name: "," not in name and name not in {"url", "sig", "exp", "sp"}
)
PARAMS = st.dictionaries(PARAM_NAMES, st.text(max_size=20), max_size=5).map(
    lambda mapping: list(mapping.items())
)


@given(
    destination=st.text(max_size=200),
    key_prefix=st.none() | PREFIXES,
    params=PARAMS,
    expires_at=st.none() | st.integers(min_value=1, max_value=2**63 - 1),
)
def test_sign_matches_stdlib_hmac(
    destination: str,
    key_prefix: str | None,
    params: list[tuple[str, str]],
    expires_at: int | None,
) -> None:
    message = python_click_message(destination, key_prefix, params, expires_at)
    assert (
        _core.click_signature_message(
            destination, key_prefix=key_prefix, params=params, expires_at=expires_at
        )
        == message
    )
    digest = hmac.new(SECRET, message, hashlib.sha256).hexdigest()
    sig = _core.sign_click(
        SECRET, destination, key_prefix=key_prefix, params=params, expires_at=expires_at
    )
    assert sig == (f"{key_prefix}_{digest}" if key_prefix else digest)
    assert (
        _core.verify_click([SECRET], destination, sig, params=params, expires_at=expires_at, now=0)
        == 0
    )


@given(sig=st.text(max_size=120))
def test_random_sig_raises_signature_error(sig: str) -> None:
    with pytest.raises(_core.SignatureError):
        _core.verify_click([SECRET], "https://example.com/", sig, now=0)


@given(position=st.integers(min_value=0, max_value=68), replacement=st.characters())
def test_mutated_sig_never_verifies(position: int, replacement: str) -> None:
    sig = _core.sign_click(SECRET, "https://example.com/", key_prefix="acme")
    mutated = sig[:position] + replacement + sig[position + 1 :]
    if mutated == sig:
        return
    with pytest.raises(_core.SignatureError):
        _core.verify_click([SECRET], "https://example.com/", mutated, now=0)


def test_verify_tries_every_secret() -> None:
    sig = _core.sign_click(b"new", "https://example.com/")
    assert _core.verify_click([b"old", b"new"], "https://example.com/", sig, now=0) == 1
    assert _core.verify_click([b"new", b"new"], "https://example.com/", sig, now=0) == 0


def test_expired_only_after_valid_signature() -> None:
    sig = _core.sign_click(SECRET, "https://example.com/", expires_at=100)
    assert _core.verify_click([SECRET], "https://example.com/", sig, expires_at=100, now=100) == 0
    with pytest.raises(_core.SignatureExpired, match="expired at 100"):
        _core.verify_click([SECRET], "https://example.com/", sig, expires_at=100, now=101)
    with pytest.raises(_core.SignatureError) as raised:
        _core.verify_click([b"other"], "https://example.com/", sig, expires_at=100, now=101)
    assert type(raised.value) is _core.SignatureError


def test_split_signature_forms() -> None:
    digest = "ab" * 32
    assert _core.split_signature(digest) == (None, digest)
    assert _core.split_signature(f"acme_{digest}") == ("acme", digest)
    for bad in ("", digest.upper(), digest[:-1], f"_{digest}", f"acme-{digest}", f"a_b_{digest}"):
        with pytest.raises(_core.SignatureError):
            _core.split_signature(bad)


def test_error_message_truncates_echoed_sig() -> None:
    with pytest.raises(_core.SignatureError) as raised:
        _core.split_signature("x" * 10_000)
    assert len(str(raised.value)) < 200
    assert "x" * 50 in str(raised.value)
    assert "x" * 51 not in str(raised.value)


def test_secret_never_in_message() -> None:
    secret = b"topsecretvalue-0123456789"
    with pytest.raises(_core.SignatureError) as raised:
        _core.verify_click([secret], "https://example.com/", "ab" * 32, now=0)
    assert "topsecret" not in str(raised.value)


def test_sign_rejects_empty_secret() -> None:
    with pytest.raises(ValueError, match="secret"):
        _core.sign_click(b"", "https://example.com/")


def test_sign_accepts_bytearray_secret() -> None:
    assert _core.sign_click(bytearray(SECRET), "x") == _core.sign_click(SECRET, "x")


def test_params_must_be_pairs_of_str() -> None:
    with pytest.raises(TypeError):
        _core.sign_click(SECRET, "x", params=[("a", 1)])  # type: ignore[list-item]
    with pytest.raises(TypeError):
        _core.sign_click(SECRET, "x", params="ab")  # type: ignore[arg-type]


def test_long_destination_signs_without_gil_problems() -> None:
    destination = "https://example.com/" + "a" * 100_000
    sig = _core.sign_click(SECRET, destination)
    assert _core.verify_click([SECRET], destination, sig, now=0) == 0


@pytest.mark.parametrize("field", ["destination", "sig"])
def test_verify_lone_surrogate_is_signature_error(field: str) -> None:
    destination = "https://example.com/a"
    arguments = {"destination": destination, "sig": _core.sign_click(SECRET, destination)}
    arguments[field] = arguments[field][:5] + "\ud800" + arguments[field][6:]
    with pytest.raises(_core.SignatureError, match="lone surrogate"):
        _core.verify_click([SECRET], arguments["destination"], arguments["sig"], now=0)


def test_split_signature_lone_surrogate() -> None:
    with pytest.raises(_core.SignatureError, match="lone surrogate"):
        _core.split_signature("acme_" + "\ud800" * 64)


def test_verify_non_string_sig_is_type_error() -> None:
    with pytest.raises(TypeError):
        _core.verify_click([SECRET], "https://example.com/a", 12345, now=0)  # type: ignore[arg-type]
