"""Every shared vector file, checked against the extension and a second implementation."""

from __future__ import annotations

import hashlib
import hmac

import pytest
import uuid_utils
import zstandard
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

import tracker.errors
from tracker import _core

from .conftest import load_vectors, pairs

CLICKS = load_vectors("click_urls.json")
ENCRYPTED = load_vectors("encrypted_urls.json")
UUIDS = load_vectors("uuid7_rfc9562.json")
RECORD = load_vectors("record_batch.json")


def case_id(case: dict) -> str:
    return case["name"]


@pytest.mark.parametrize("case", load_vectors("hmac_sha256_rfc4231.json")["cases"], ids=str)
def test_rfc4231_matches_stdlib(case: dict) -> None:
    mac = hmac.new(bytes.fromhex(case["key"]), bytes.fromhex(case["data"]), hashlib.sha256)
    assert mac.hexdigest().startswith(case["mac"])
    if case["truncated_to_bits"] is None:
        assert len(case["mac"]) == 64
    else:
        assert len(case["mac"]) * 4 == case["truncated_to_bits"]


def test_rfc4231_truncated_mac_rejected_as_sig() -> None:
    cases = load_vectors("hmac_sha256_rfc4231.json")["cases"]
    truncated = [case for case in cases if case["truncated_to_bits"]]
    assert len(truncated) == 1
    mac = truncated[0]["mac"]
    for sig in (mac, f"acme_{mac}"):
        with pytest.raises(_core.SignatureError, match="64 lowercase hex"):
            _core.split_signature(sig)
        with pytest.raises(_core.SignatureError):
            _core.verify_click([b"k"], "https://example.com/", sig, now=0)


@pytest.mark.parametrize(
    "case", load_vectors("aes256gcm_nist.json")["cases"], ids=lambda c: c["source"]
)
def test_nist_gcm_case_matches_cryptography(case: dict) -> None:
    # The extension exposes no raw AES-GCM; the Rust tests run these against it, and
    # here they check that the file agrees with an independent implementation.
    sealed = bytes.fromhex(case["ciphertext"] + case["tag"])
    cipher = AESGCM(bytes.fromhex(case["key"]))
    if case["valid"]:
        plaintext = cipher.decrypt(bytes.fromhex(case["iv"]), sealed, bytes.fromhex(case["aad"]))
        assert plaintext.hex() == case["plaintext"]
    else:
        with pytest.raises(InvalidTag):
            cipher.decrypt(bytes.fromhex(case["iv"]), sealed, bytes.fromhex(case["aad"]))


@pytest.mark.parametrize("case", CLICKS["valid"], ids=case_id)
def test_click_vector_sign_and_verify(case: dict) -> None:
    params = pairs(case["params"])
    message = _core.click_signature_message(
        case["destination"],
        key_prefix=case["key_prefix"],
        params=params,
        expires_at=case["expires_at"],
    )
    assert message.hex() == case["message"]
    secret = bytes.fromhex(case["secret"])
    sig = _core.sign_click(
        secret,
        case["destination"],
        key_prefix=case["key_prefix"],
        params=params,
        expires_at=case["expires_at"],
    )
    assert sig == case["sig"]
    index = _core.verify_click(
        [secret],
        case["destination"],
        sig,
        params=params,
        expires_at=case["expires_at"],
        now=case["now"],
    )
    assert index == 0


def verify_case(case: dict) -> int:
    return _core.verify_click(
        [bytes.fromhex(secret) for secret in case["secrets"]],
        case["destination"],
        case["sig"],
        params=pairs(case["params"]),
        expires_at=case["expires_at"],
        now=case["now"],
    )


@pytest.mark.parametrize("case", CLICKS["invalid_verify"], ids=case_id)
def test_click_vector_verify_failure(case: dict) -> None:
    error = getattr(tracker.errors, case["error"])
    with pytest.raises(error) as raised:
        verify_case(case)
    assert type(raised.value) is error


@pytest.mark.parametrize("case", CLICKS["verify_matches"], ids=case_id)
def test_click_vector_rotated_secret(case: dict) -> None:
    assert verify_case(case) == case["matched_index"]


@pytest.mark.parametrize("case", CLICKS["invalid_sign"], ids=case_id)
def test_click_vector_sign_failure(case: dict) -> None:
    with pytest.raises(getattr(tracker.errors, case["error"])):
        _core.sign_click(
            bytes.fromhex(case["secret"]),
            case["destination"],
            key_prefix=case["key_prefix"],
            params=pairs(case["params"]),
            expires_at=case["expires_at"],
        )


@pytest.mark.parametrize("case", ENCRYPTED["valid"], ids=case_id)
def test_encrypted_vector_round_trip(case: dict) -> None:
    key = bytes.fromhex(case["key"])
    d = _core.encrypt_destination(
        key,
        case["key_id"],
        case["destination"],
        key_prefix=case["key_prefix"],
        params=pairs(case["params"]),
        expires_at=case["expires_at"],
        nonce=bytes.fromhex(case["nonce"]),
    )
    assert d == case["d"]
    assert _core.blob_header(d) == (case["key_prefix"], case["key_id"])
    opened = _core.decrypt_destination(key, d, now=case["now"])
    assert opened.destination == case["destination"]
    assert opened.params == pairs(case["params"])
    assert opened.expires_at == case["expires_at"]
    assert opened.key_prefix == case["key_prefix"]
    assert opened.key_id == case["key_id"]


def resolve_and_decrypt(case: dict) -> _core.Decrypted:
    """Pick the key by the blob's key id the way the click handler does."""
    _, key_id = _core.blob_header(case["d"])
    key_hex = case["keys"].get(str(key_id))
    if key_hex is None:
        raise tracker.errors.UnknownKeyId(f"key id {key_id} is not a key of this tenant")
    return _core.decrypt_destination(bytes.fromhex(key_hex), case["d"], now=case["now"])


@pytest.mark.parametrize("case", ENCRYPTED["invalid"], ids=case_id)
def test_encrypted_vector_failure(case: dict) -> None:
    error = getattr(tracker.errors, case["error"])
    with pytest.raises(error) as raised:
        resolve_and_decrypt(case)
    assert type(raised.value) is error


def test_uuid7_rfc_example_timestamp() -> None:
    example = UUIDS["rfc9562_example"]
    assert _core.uuid7_timestamp_ms(example["uuid"]) == example["timestamp_ms"]
    parsed = uuid_utils.UUID(example["uuid"])
    assert parsed.version == 7
    assert parsed.timestamp == example["timestamp_ms"]


@pytest.mark.parametrize("case", UUIDS["valid"], ids=lambda c: c["uuid"])
def test_uuid7_vector_timestamp(case: dict) -> None:
    assert _core.uuid7_timestamp_ms(case["uuid"]) == case["timestamp_ms"]


@pytest.mark.parametrize("case", UUIDS["invalid"], ids=lambda c: c["reason"])
def test_uuid7_vector_invalid(case: dict) -> None:
    with pytest.raises(_core.CodecError):
        _core.uuid7_timestamp_ms(case["value"])


@pytest.mark.parametrize("case", load_vectors("partition.json")["cases"], ids=str)
def test_partition_vector(case: dict) -> None:
    assert _core.partition_for(case["key_prefix"], case["partitions"]) == case["partition"]
    assert int(case["fnv1a_64"], 16) % case["partitions"] == case["partition"]


def test_record_batch_vector_exact_bytes() -> None:
    events = [event.encode() for event in RECORD["events"]]
    blob = bytes.fromhex(RECORD["record_batch"])
    assert _core.encode_record_batch(events) == blob
    assert _core.decode_record_batch(blob) == events


def test_record_batch_vector_independent_decoder() -> None:
    blob = bytes.fromhex(RECORD["record_batch"])
    assert blob[0] == 1
    assert int.from_bytes(blob[1:5], "big") == len(RECORD["events"])
    payload = zstandard.ZstdDecompressor().decompress(blob[5:])
    assert payload.hex() == RECORD["payload"]


@pytest.mark.parametrize("case", RECORD["invalid"], ids=case_id)
def test_record_batch_vector_invalid(case: dict) -> None:
    with pytest.raises(_core.RecordBatchError):
        _core.decode_record_batch(bytes.fromhex(case["record_batch"]))


QUERY = load_vectors("query_components.json")


@pytest.mark.parametrize("case", QUERY["decoded"], ids=lambda case: case["raw"] or "empty")
def test_query_component_decodes(case: dict) -> None:
    assert _core.decode_query_component(case["raw"], "f") == case["decoded"]


@pytest.mark.parametrize("case", QUERY["rejected"], ids=lambda case: case["raw"])
def test_query_component_rejected(case: dict) -> None:
    with pytest.raises(tracker.errors.QueryStringError) as caught:
        _core.decode_query_component(case["raw"], "f")
    assert caught.value.code == case["error"]
    assert caught.value.field == "f"


@pytest.mark.parametrize(
    ("text", "code"),
    [("\ud800", "invalid_utf8"), ("%41\ud800", "invalid_utf8"), ("%zz\ud800", "invalid_escape")],
)
def test_query_component_lone_surrogate(text: str, code: str) -> None:
    """Text with a lone surrogate has no UTF-8 form, and an invalid escape in it is reported first."""
    with pytest.raises(tracker.errors.QueryStringError) as caught:
        _core.decode_query_component(text, "f")
    assert caught.value.code == code
