"""A server on ::1 in encrypted mode with global keys and no trusted proxies."""

from __future__ import annotations

from collections.abc import Iterator
from urllib.parse import quote

import pytest

from tests.ingest.conftest import (
    GLOBAL_AES_KEY,
    GLOBAL_HMAC_SECRET,
    IngestServer,
    launch,
    stop_server,
)
from tracker._core import encrypt_destination, sign_click

ROTATED_KEY = bytes(range(100, 132))


@pytest.fixture(scope="module")
def encrypted(tmp_path_factory: pytest.TempPathFactory) -> Iterator[IngestServer]:
    server = launch(
        tmp_path_factory.mktemp("encrypted") / "data",
        host="::1",
        URL_MODE="encrypted",
        ENCRYPTION_KEY=GLOBAL_AES_KEY.hex(),
        ENCRYPTION_KEYS=f"7:{ROTATED_KEY.hex()}",
        TRUSTED_PROXIES="",
    )
    yield server
    stop_server(server.process)
    server.registry.close()


def click_id_of(location: str) -> str:
    return location.split("ad_click_id=")[1].split("#")[0].split("&")[0]


@pytest.mark.parametrize(("key", "key_id"), [(GLOBAL_AES_KEY, 0), (ROTATED_KEY, 7)])
def test_global_keys_decrypt(encrypted, key, key_id):
    blob = encrypt_destination(
        key, key_id, "https://hidden.example/x", params=[("key_prefix", "acme")]
    )

    reply = encrypted.get(f"/t?d={quote(blob, safe='')}")

    assert reply.status == 307
    event = encrypted.events()[click_id_of(reply.headers["location"])]
    assert event["params"]["key_prefix"] == "acme"


def test_unprefixed_signature_rejected_in_encrypted_mode(encrypted):
    destination = "https://shop.example/"
    sig = sign_click(GLOBAL_HMAC_SECRET.encode(), destination)
    reply = encrypted.get(f"/t?url={quote(destination, safe='')}&sig={sig}&key_prefix=acme")
    assert reply.status == 403
    assert reply.json()["error"]["code"] == "invalid_signature"


def test_tenant_signature_still_works_in_encrypted_mode(encrypted):
    destination = "https://shop.example/t"
    sig = sign_click(encrypted.secrets["acme"], destination, key_prefix="acme")
    reply = encrypted.get(f"/t?url={quote(destination, safe='')}&sig={sig}")
    assert reply.status == 307


def test_ipv6_peer_recorded_and_forwarded_headers_ignored(encrypted):
    reply = encrypted.get(
        "/p?key_prefix=acme",
        headers={"X-Forwarded-For": "198.51.100.1", "Forwarded": "for=192.0.2.1"},
    )
    event = encrypted.events()[reply.json()["event_id"]]
    assert event["ip"] == "::1"
