"""SDK URL builders against the shared byte-format vectors in the repository's tests/vectors."""

from __future__ import annotations

import json
from urllib.parse import parse_qsl, urlsplit

import pytest
from conftest import VECTORS
from tracker_sdk import build_encrypted_click_url, build_signed_click_url
from tracker_sdk._wire import encrypt, sign, signature_message

CLICKS = json.loads((VECTORS / "click_urls.json").read_text())
ENCRYPTED = json.loads((VECTORS / "encrypted_urls.json").read_text())


def is_web_url(destination: str) -> bool:
    """Return whether the URL builders accept `destination`; the codec itself takes any text."""
    parts = urlsplit(destination)
    return parts.scheme in ("http", "https") and bool(parts.netloc)


def query(url: str) -> dict[str, str]:
    return dict(parse_qsl(urlsplit(url).query, keep_blank_values=True))


def test_vector_files_have_cases():
    assert len(CLICKS["valid"]) >= 3
    assert len(CLICKS["invalid_sign"]) >= 1
    assert len(ENCRYPTED["valid"]) >= 3


@pytest.mark.parametrize("case", CLICKS["valid"], ids=lambda case: case["name"])
def test_click_vector_message_and_sig(case):
    pairs = [tuple(pair) for pair in case["params"]]
    message = signature_message(
        case["destination"],
        key_prefix=case["key_prefix"],
        covered=pairs,
        expires_at=case["expires_at"],
    )
    assert message.hex() == case["message"]
    assert (
        sign(
            bytes.fromhex(case["secret"]),
            case["destination"],
            key_prefix=case["key_prefix"],
            covered=pairs,
            expires_at=case["expires_at"],
        )
        == case["sig"]
    )
    if not is_web_url(case["destination"]):
        with pytest.raises(ValueError, match="destination"):
            build_signed_click_url("https://track.example", b"s", case["destination"])
        return

    url = build_signed_click_url(
        "https://track.example",
        bytes.fromhex(case["secret"]),
        case["destination"],
        key_prefix=case["key_prefix"],
        params=pairs,
        signed_params=[name for name, _ in pairs],
        expires_at=case["expires_at"],
    )
    assert query(url)["sig"] == case["sig"]


@pytest.mark.parametrize("case", CLICKS["invalid_sign"], ids=lambda case: case["name"])
def test_click_vector_invalid_sign_rejected(case):
    pairs = [tuple(pair) for pair in case["params"]]
    with pytest.raises((ValueError, TypeError)):
        build_signed_click_url(
            "https://track.example",
            bytes.fromhex(case["secret"]),
            case["destination"],
            key_prefix=case["key_prefix"],
            params=pairs,
            signed_params=[name for name, _ in pairs],
            expires_at=case["expires_at"],
        )


@pytest.mark.parametrize("case", ENCRYPTED["valid"], ids=lambda case: case["name"])
def test_encrypted_vector_blob(case):
    hidden = [tuple(pair) for pair in case["params"]]
    assert (
        encrypt(
            bytes.fromhex(case["key"]),
            case["key_id"],
            case["destination"],
            key_prefix=case["key_prefix"],
            hidden=hidden,
            expires_at=case["expires_at"],
            nonce=bytes.fromhex(case["nonce"]),
        )
        == case["d"]
    )
    if not is_web_url(case["destination"]):
        with pytest.raises(ValueError, match="destination"):
            build_encrypted_click_url("https://track.example", bytes(32), 0, case["destination"])
        return

    url = build_encrypted_click_url(
        "https://track.example",
        bytes.fromhex(case["key"]),
        case["key_id"],
        case["destination"],
        key_prefix=case["key_prefix"],
        hidden_params=hidden,
        expires_at=case["expires_at"],
        nonce=bytes.fromhex(case["nonce"]),
    )
    assert query(url)["d"] == case["d"]
