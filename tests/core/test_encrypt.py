"""Encrypted click URLs: differential tests against cryptography's AESGCM and hostile blobs."""

from __future__ import annotations

import base64
import string

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tracker import _core

from .codec_reference import python_d_aad, python_open_d

KEY = bytes(range(32))
PREFIXES = st.text(alphabet=string.ascii_lowercase + string.digits, min_size=1, max_size=32)
PARAMS = st.dictionaries(st.text(min_size=1, max_size=12), st.text(max_size=20), max_size=5).map(
    lambda mapping: list(mapping.items())
)


@given(
    destination=st.text(max_size=300),
    key_prefix=st.none() | PREFIXES,
    key_id=st.integers(min_value=0, max_value=255),
    params=PARAMS,
    expires_at=st.none() | st.integers(min_value=1, max_value=2**63 - 1),
)
def test_encrypt_round_trips_and_matches_cryptography(
    destination: str,
    key_prefix: str | None,
    key_id: int,
    params: list[tuple[str, str]],
    expires_at: int | None,
) -> None:
    d = _core.encrypt_destination(
        KEY, key_id, destination, key_prefix=key_prefix, params=params, expires_at=expires_at
    )
    assert _core.blob_header(d) == (key_prefix, key_id)
    assert python_open_d(KEY, d) == (expires_at or 0, params, destination)
    opened = _core.decrypt_destination(KEY, d, now=0)
    assert (opened.destination, opened.params, opened.expires_at) == (
        destination,
        params,
        expires_at,
    )
    assert (opened.key_prefix, opened.key_id) == (key_prefix, key_id)


def test_random_nonce_differs_per_call() -> None:
    first = _core.encrypt_destination(KEY, 1, "https://example.com/")
    second = _core.encrypt_destination(KEY, 1, "https://example.com/")
    assert first != second


@given(d=st.text(max_size=200))
def test_random_d_raises_decryption_error(d: str) -> None:
    with pytest.raises(_core.DecryptionError):
        _core.decrypt_destination(KEY, d, now=0)


@given(data=st.data())
def test_mutated_blob_never_decrypts(data: st.DataObject) -> None:
    d = _core.encrypt_destination(KEY, 1, "https://example.com/a", key_prefix="acme")
    position = data.draw(st.integers(min_value=0, max_value=len(d) - 1))
    replacement = data.draw(st.characters())
    mutated = d[:position] + replacement + d[position + 1 :]
    if mutated == d:
        return
    with pytest.raises(_core.DecryptionError):
        _core.decrypt_destination(KEY, mutated, now=0)


@given(raw=st.binary(min_size=40, max_size=120))
def test_forged_blob_fails_tag(raw: bytes) -> None:
    forged = base64.urlsafe_b64encode(b"\x01" + raw).rstrip(b"=").decode()
    with pytest.raises(_core.DecryptionError, match="authentication"):
        _core.decrypt_destination(KEY, forged, now=0)


def test_plaintext_malformed_after_valid_tag() -> None:
    # A blob sealed by someone holding the key but with a broken layout.
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    nonce = bytes(12)
    sealed = AESGCM(KEY).encrypt(nonce, b"\x00" * 8 + b"\x00\x05\x00", python_d_aad(None, 1))
    d = base64.urlsafe_b64encode(b"\x01\x01" + nonce + sealed).rstrip(b"=").decode()
    with pytest.raises(_core.DecryptionError, match="malformed"):
        _core.decrypt_destination(KEY, d, now=0)


def test_expired_blob_raises_signature_expired() -> None:
    d = _core.encrypt_destination(KEY, 1, "https://example.com/", expires_at=50)
    assert _core.decrypt_destination(KEY, d, now=50).expires_at == 50
    with pytest.raises(_core.SignatureExpired):
        _core.decrypt_destination(KEY, d, now=51)
    with pytest.raises(_core.DecryptionError):
        _core.decrypt_destination(bytes(32), d, now=51)


def test_key_and_arguments_checked() -> None:
    with pytest.raises(ValueError, match="32 bytes"):
        _core.encrypt_destination(b"short", 1, "x")
    with pytest.raises(ValueError, match="32 bytes"):
        _core.decrypt_destination(b"short", _core.encrypt_destination(KEY, 1, "x"), now=0)
    with pytest.raises(ValueError, match="key_id"):
        _core.encrypt_destination(KEY, 256, "x")
    with pytest.raises(ValueError, match="nonce"):
        _core.encrypt_destination(KEY, 1, "x", nonce=b"short")
    with pytest.raises(_core.CodecError, match="expires_at"):
        _core.encrypt_destination(KEY, 1, "x", expires_at=0)
    with pytest.raises(_core.CodecError, match="twice"):
        _core.encrypt_destination(KEY, 1, "x", params=[("a", "1"), ("a", "2")])


def test_oversized_d_rejected() -> None:
    with pytest.raises(_core.CodecError, match="maximum"):
        _core.encrypt_destination(KEY, 1, "x" * 20_000)
    with pytest.raises(_core.DecryptionError, match="maximum"):
        _core.decrypt_destination(KEY, "A" * 20_000, now=0)


def test_decrypted_repr_hides_plaintext() -> None:
    d = _core.encrypt_destination(
        KEY, 1, "https://secret.example/", key_prefix="acme", params=[("p", "v")]
    )
    text = repr(_core.decrypt_destination(KEY, d, now=0))
    assert "secret.example" not in text
    assert "acme" in text


def test_error_messages_never_echo_key() -> None:
    d = _core.encrypt_destination(KEY, 1, "https://example.com/")
    with pytest.raises(_core.DecryptionError) as raised:
        _core.decrypt_destination(b"K" * 32, d, now=0)
    assert "KKKK" not in str(raised.value)


def test_lone_surrogate_blob_is_decryption_error() -> None:
    d = _core.encrypt_destination(KEY, 1, "https://example.com/a", key_prefix="acme")
    mutated = d[:10] + "\ud800" + d[11:]
    with pytest.raises(_core.DecryptionError, match="lone surrogate"):
        _core.decrypt_destination(KEY, mutated, now=0)
    with pytest.raises(_core.DecryptionError, match="lone surrogate"):
        _core.blob_header(mutated)
