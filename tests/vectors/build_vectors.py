"""Regenerate the shared codec vectors from independent Python implementations.

Click messages and signatures are built here with `struct` and stdlib `hmac`,
encrypted blobs with `cryptography`'s AESGCM, partitions with a plain FNV-1a
loop, so the files check the extension against a second implementation. Only
`record_batch.json` pins the extension's own encoder output, and the tests decode
it with the independent `zstandard` package as well.

Run from the repository root: `python tests/vectors/build_vectors.py`.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import struct
import urllib.parse
from pathlib import Path

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

HERE = Path(__file__).parent
CLICK_DOMAIN = b"tracker-click-v1"
D_DOMAIN = b"tracker-d-v1"


def write(name: str, document: dict) -> None:
    path = HERE / name
    path.write_text(json.dumps(document, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def rfc4231_cases() -> list[dict]:
    """Return the seven HMAC-SHA256 cases of RFC 4231 section 4."""
    long_key = "aa" * 131
    return [
        {
            "case": 1,
            "key": "0b" * 20,
            "data": b"Hi There".hex(),
            "mac": "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7",
            "truncated_to_bits": None,
        },
        {
            "case": 2,
            "key": b"Jefe".hex(),
            "data": b"what do ya want for nothing?".hex(),
            "mac": "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843",
            "truncated_to_bits": None,
        },
        {
            "case": 3,
            "key": "aa" * 20,
            "data": "dd" * 50,
            "mac": "773ea91e36800e46854db8ebd09181a72959098b3ef8c122d9635514ced565fe",
            "truncated_to_bits": None,
        },
        {
            "case": 4,
            "key": bytes(range(1, 26)).hex(),
            "data": "cd" * 50,
            "mac": "82558a389a443c0ea4cc819899f2083a85f0faa3e578f8077a2e3ff46729665b",
            "truncated_to_bits": None,
        },
        {
            "case": 5,
            "key": "0c" * 20,
            "data": b"Test With Truncation".hex(),
            "mac": "a3b6167473100ee06e0c796c2955552b",
            "truncated_to_bits": 128,
        },
        {
            "case": 6,
            "key": long_key,
            "data": b"Test Using Larger Than Block-Size Key - Hash Key First".hex(),
            "mac": "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54",
            "truncated_to_bits": None,
        },
        {
            "case": 7,
            "key": long_key,
            "data": (
                b"This is a test using a larger than block-size key and a larger than "
                b"block-size data. The key needs to be hashed before being used by the "
                b"HMAC algorithm."
            ).hex(),
            "mac": "9b09ffa71b942fcb27635fbcd5b0e944bfdc63644f0713938a7f51535c3a35e2",
            "truncated_to_bits": None,
        },
    ]


def click_message(
    destination: str,
    key_prefix: str | None,
    params: list[list[str]],
    expires_at: int | None,
) -> bytes:
    def field(value: bytes) -> bytes:
        return struct.pack(">I", len(value)) + value

    covered = sorted(params, key=lambda pair: pair[0].encode())
    message = CLICK_DOMAIN
    message += field((key_prefix or "").encode())
    message += field(destination.encode())
    message += struct.pack(">Q", expires_at or 0)
    message += struct.pack(">I", len(covered))
    for name, value in covered:
        message += field(name.encode()) + field(value.encode())
    return message


def click_sig(secret: bytes, message: bytes, key_prefix: str | None) -> str:
    digest = hmac.new(secret, message, hashlib.sha256).hexdigest()
    return f"{key_prefix}_{digest}" if key_prefix else digest


def click_cases() -> dict:
    secret = bytes(range(32))
    other_secret = bytes(range(100, 132))
    valid_inputs = [
        ("no prefix", "https://example.com/landing", None, [], None),
        ("tenant prefix", "https://example.com/landing?utm=1", "acme", [], None),
        (
            "covered params",
            "https://shop.example/p/1",
            "acme",
            [["sub", "42"], ["cid", "x y"]],
            None,
        ),
        ("expiry", "https://example.com/", "acme", [], 1_900_000_000),
        (
            "unicode destination",
            "https://例え.jp/パス?q=ü",
            "t0",
            [["näme", "wert"]],
            1_900_000_000,
        ),
        ("empty destination", "", None, [], None),
        ("longest prefix", "https://example.com/", "a" * 32, [], None),
        (
            "params sorted by bytes",
            "https://example.com/",
            "acme",
            [["b", "2"], ["B", "1"], ["a", ""]],
            None,
        ),
    ]
    valid = []
    for name, destination, prefix, params, expires_at in valid_inputs:
        message = click_message(destination, prefix, params, expires_at)
        valid.append(
            {
                "name": name,
                "secret": secret.hex(),
                "destination": destination,
                "key_prefix": prefix,
                "params": params,
                "expires_at": expires_at,
                "now": 1_800_000_000,
                "message": message.hex(),
                "sig": click_sig(secret, message, prefix),
            }
        )

    base_message = click_message("https://example.com/a", "acme", [["sub", "1"]], 1_900_000_000)
    base_sig = click_sig(secret, base_message, "acme")
    base = {
        "secrets": [secret.hex()],
        "destination": "https://example.com/a",
        "sig": base_sig,
        "params": [["sub", "1"]],
        "expires_at": 1_900_000_000,
        "now": 1_800_000_000,
    }
    no_prefix_hex = base_sig.split("_", 1)[1]
    verify_failures = [
        ("tampered destination", {"destination": "https://evil.example/a"}, "SignatureError"),
        ("tampered param", {"params": [["sub", "2"]]}, "SignatureError"),
        ("dropped param", {"params": []}, "SignatureError"),
        ("tampered prefix", {"sig": "beta_" + no_prefix_hex}, "SignatureError"),
        ("prefix removed", {"sig": no_prefix_hex}, "SignatureError"),
        ("tampered expiry", {"expires_at": 1_900_000_001}, "SignatureError"),
        ("expiry removed", {"expires_at": None}, "SignatureError"),
        ("truncated digest", {"sig": base_sig[:-2]}, "SignatureError"),
        ("digest too long", {"sig": base_sig + "00"}, "SignatureError"),
        ("uppercase digest", {"sig": "acme_" + no_prefix_hex.upper()}, "SignatureError"),
        ("uppercase prefix", {"sig": "ACME_" + no_prefix_hex}, "SignatureError"),
        ("wrong tenant secret", {"secrets": [other_secret.hex()]}, "SignatureError"),
        ("no secrets", {"secrets": []}, "SignatureError"),
        ("not hex", {"sig": "acme_" + "g" * 64}, "SignatureError"),
        ("empty sig", {"sig": ""}, "SignatureError"),
        ("two underscores", {"sig": "acme__" + no_prefix_hex}, "SignatureError"),
        ("prefix too long", {"sig": "a" * 33 + "_" + no_prefix_hex}, "SignatureError"),
        ("padded sig", {"sig": base_sig + "="}, "SignatureError"),
        ("expired", {"now": 1_900_000_001}, "SignatureExpired"),
        (
            "expired forged",
            {"now": 1_900_000_001, "destination": "https://evil.example/"},
            "SignatureError",
        ),
    ]
    invalid_verify = []
    for name, changes, error in verify_failures:
        case = dict(base, name=name, error=error)
        case.update(changes)
        invalid_verify.append(case)

    rotated = dict(
        base, name="rotated secret matches second", secrets=[other_secret.hex(), secret.hex()]
    )
    rotated["matched_index"] = 1

    sign_failures = [
        ("reserved covered name", {"params": [["url", "x"]]}),
        ("covered name twice", {"params": [["a", "1"], ["a", "2"]]}),
        ("empty covered name", {"params": [["", "1"]]}),
        ("comma in covered name", {"params": [["a,b", "1"]]}),
        ("uppercase prefix", {"key_prefix": "Acme"}),
        ("empty prefix", {"key_prefix": ""}),
        ("prefix too long", {"key_prefix": "a" * 33}),
        ("zero expiry", {"expires_at": 0}),
        ("negative expiry", {"expires_at": -5}),
    ]
    invalid_sign = []
    for name, changes in sign_failures:
        case = {
            "name": name,
            "secret": secret.hex(),
            "destination": "https://example.com/",
            "key_prefix": "acme",
            "params": [],
            "expires_at": None,
            "error": "SignatureError",
        }
        case.update(changes)
        invalid_sign.append(case)

    return {
        "valid": valid,
        "verify_matches": [rotated],
        "invalid_verify": invalid_verify,
        "invalid_sign": invalid_sign,
    }


def d_plaintext(destination: str, params: list[list[str]], expires_at: int | None) -> bytes:
    plaintext = struct.pack(">QH", expires_at or 0, len(params))
    for name, value in params:
        for part in (name.encode(), value.encode()):
            plaintext += struct.pack(">H", len(part)) + part
    return plaintext + destination.encode()


def d_aad(key_prefix: str | None, version: int, key_id: int) -> bytes:
    prefix = (key_prefix or "").encode()
    return D_DOMAIN + bytes([len(prefix)]) + prefix + bytes([version, key_id])


def b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def seal_d(
    key: bytes,
    key_id: int,
    nonce: bytes,
    destination: str,
    key_prefix: str | None,
    params: list[list[str]],
    expires_at: int | None,
    version: int = 1,
) -> str:
    sealed = AESGCM(key).encrypt(
        nonce, d_plaintext(destination, params, expires_at), d_aad(key_prefix, version, key_id)
    )
    blob = b64url(bytes([version, key_id]) + nonce + sealed)
    return f"{key_prefix}.{blob}" if key_prefix else blob


def encrypted_cases() -> dict:
    key = bytes(range(32, 64))
    nonce = bytes(range(12))
    valid_inputs = [
        ("no prefix", 1, "https://example.com/landing", None, [], None),
        ("tenant prefix", 7, "https://example.com/x?y=1", "acme", [], None),
        (
            "hidden params",
            0,
            "https://shop.example/p",
            "acme",
            [["sub", "42"], ["näme", "wert"]],
            None,
        ),
        ("expiry", 255, "https://example.com/", "t0", [], 1_900_000_000),
        ("unicode destination", 3, "https://例え.jp/パス", "acme", [["a", ""]], 1_900_000_000),
        ("empty destination", 1, "", None, [], None),
    ]
    valid = []
    for name, key_id, destination, prefix, params, expires_at in valid_inputs:
        valid.append(
            {
                "name": name,
                "key": key.hex(),
                "key_id": key_id,
                "nonce": nonce.hex(),
                "destination": destination,
                "key_prefix": prefix,
                "params": params,
                "expires_at": expires_at,
                "now": 1_800_000_000,
                "d": seal_d(key, key_id, nonce, destination, prefix, params, expires_at),
            }
        )

    good = seal_d(key, 1, nonce, "https://example.com/a", "acme", [["sub", "1"]], 1_900_000_000)
    blob = good.split(".", 1)[1]
    raw = base64.urlsafe_b64decode(blob + "=" * (-len(blob) % 4))
    flipped = bytearray(raw)
    flipped[20] ^= 0x01
    other_id = bytearray(raw)
    other_id[1] = 2
    # The last character of a 4n+2 or 4n+3 long base64url string carries spare
    # bits that a canonical encoder leaves zero; setting one makes it non-canonical.
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    last = alphabet.index(blob[-1])
    stray = blob[:-1] + alphabet[last | 1] if len(blob) % 4 == 3 else blob[:-1] + alphabet[last | 3]
    version_two = seal_d(key, 1, nonce, "https://example.com/a", "acme", [], None, version=2)
    no_prefix = seal_d(key, 1, nonce, "https://example.com/a", None, [], None)
    # Key id 2 maps to the same key bytes, so "wrong key id" fails on the
    # associated data alone, not on a different key.
    base = {"key": key.hex(), "keys": {"1": key.hex(), "2": key.hex()}, "now": 1_800_000_000}
    failures = [
        ("tampered byte", "acme." + b64url(bytes(flipped)), "DecryptionError"),
        ("wrong key id", "acme." + b64url(bytes(other_id)), "DecryptionError"),
        ("swapped prefix", "beta." + blob, "DecryptionError"),
        ("prefix removed", blob, "DecryptionError"),
        ("prefix added", "acme." + no_prefix, "DecryptionError"),
        ("padded", good + "=" * (-len(blob) % 4 or 4), "DecryptionError"),
        ("stray bits", "acme." + stray, "DecryptionError"),
        (
            "standard base64 alphabet",
            "acme." + blob.replace("-", "+").replace("_", "/") + "+/",
            "DecryptionError",
        ),
        ("too short", "acme." + b64url(raw[:39]), "DecryptionError"),
        ("empty", "", "DecryptionError"),
        ("empty prefix", "." + blob, "DecryptionError"),
        ("uppercase prefix", "ACME." + blob, "DecryptionError"),
        ("bad version", version_two, "DecryptionError"),
        ("truncated", good[:-5], "DecryptionError"),
        ("expired", good, "SignatureExpired"),
    ]
    invalid = []
    for name, d, error in failures:
        case = dict(base, name=name, d=d, error=error)
        if name == "expired":
            case["now"] = 1_900_000_001
        invalid.append(case)
    unknown = seal_d(key, 9, nonce, "https://example.com/a", "acme", [], None)
    invalid.append(dict(base, name="unknown key id", d=unknown, error="UnknownKeyId"))
    return {"valid": valid, "invalid": invalid}


def uuid7_cases() -> dict:
    return {
        "rfc9562_example": {
            "uuid": "017F22E2-79B0-7CC3-98C4-DC0C0C07398F",
            "timestamp_ms": 0x017F22E279B0,
        },
        "valid": [
            {"uuid": "017f22e2-79b0-7cc3-98c4-dc0c0c07398f", "timestamp_ms": 0x017F22E279B0},
            {"uuid": "00000000-0000-7000-8000-000000000000", "timestamp_ms": 0},
            {"uuid": "ffffffff-ffff-7fff-bfff-ffffffffffff", "timestamp_ms": 0xFFFFFFFFFFFF},
            {"uuid": "0190b7a4-5c3e-7abc-9def-0123456789ab", "timestamp_ms": 0x0190B7A45C3E},
        ],
        "invalid": [
            {"value": "", "reason": "empty"},
            {"value": "017f22e2-79b0-4cc3-98c4-dc0c0c07398f", "reason": "version 4"},
            {"value": "017f22e2-79b0-7cc3-c8c4-dc0c0c07398f", "reason": "variant 110"},
            {"value": "017f22e2-79b0-7cc3-08c4-dc0c0c07398f", "reason": "variant 0"},
            {"value": "017f22e279b07cc398c4dc0c0c07398f", "reason": "no hyphens"},
            {"value": "{017f22e2-79b0-7cc3-98c4-dc0c0c07398f}", "reason": "braces"},
            {"value": "urn:uuid:017f22e2-79b0-7cc3-98c4-dc0c0c07398f", "reason": "urn form"},
            {"value": "017f22e2-79b0-7cc3-98c4-dc0c0c07398", "reason": "one digit short"},
            {"value": "017f22e2-79b0-7cc3-98c4-dc0c0c07398f0", "reason": "one digit long"},
            {"value": "017f22e2_79b0_7cc3_98c4_dc0c0c07398f", "reason": "underscores"},
            {"value": "017f22e2-79b0-7cc3-98c4-dc0c0c07398g", "reason": "not hex"},
            {"value": "017f22e2-79b0-7cc3-98c4-dc0c0c0739８f", "reason": "fullwidth digit"},  # noqa: RUF001 (deliberate)
            {"value": "017f22e-279b0-7cc3-98c4-dc0c0c07398f", "reason": "hyphen misplaced"},
        ],
    }


def fnv1a_64(data: bytes) -> int:
    value = 0xCBF29CE484222325
    for byte in data:
        value = ((value ^ byte) * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return value


def partition_cases() -> dict:
    cases = []
    for key_prefix in ["", "a", "acme", "demo", "t0", "z" * 32, "0123456789", "ü"]:
        for partitions in [1, 2, 7, 16, 1024]:
            value = fnv1a_64(key_prefix.encode())
            cases.append(
                {
                    "key_prefix": key_prefix,
                    "fnv1a_64": f"{value:016x}",
                    "partitions": partitions,
                    "partition": value % partitions,
                }
            )
    return {"cases": cases}


def record_batch_case() -> dict:
    # The compressed bytes are the extension's own output (zstd level 1 with a
    # content checksum); the tests also decode them with the `zstandard` package.
    from tracker._core import encode_record_batch

    events = [
        b'{"event_id":"017f22e2-79b0-7cc3-98c4-dc0c0c07398f","event_type":"click","timestamp":1645557742000,'
        b'"ip":"203.0.113.7","user_agent":"Mozilla/5.0","referer":"","accept_language":"en",'
        b'"request_path":"/t","request_host":"t.example","params":{"key_prefix":"acme"}}',
        b'{"event_id":"017f22e2-79b0-7cc3-98c4-dc0c0c073990","event_type":"view","timestamp":1645557742001,'
        b'"ip":"","user_agent":"","referer":"","accept_language":"","request_path":"/batch",'
        b'"request_host":"t.example","params":{"key_prefix":"acme","note":"line\\nbreak"}}',
    ]
    blob = encode_record_batch(events)
    return {
        "events": [event.decode() for event in events],
        "payload": b"".join(event + b"\n" for event in events).hex(),
        "record_batch": blob.hex(),
        "invalid": [
            {"name": "empty", "record_batch": ""},
            {"name": "header only", "record_batch": blob[:5].hex()},
            {"name": "truncated frame", "record_batch": blob[:-6].hex()},
            {"name": "version 2", "record_batch": ("02" + blob[1:].hex())},
            {
                "name": "count too high",
                "record_batch": (blob[:1] + (3).to_bytes(4, "big") + blob[5:]).hex(),
            },
            {
                "name": "count too low",
                "record_batch": (blob[:1] + (1).to_bytes(4, "big") + blob[5:]).hex(),
            },
            {"name": "trailing bytes", "record_batch": (blob + b"\x00").hex()},
            {"name": "not zstd", "record_batch": (blob[:5] + b"plain text\n").hex()},
            {"name": "flipped checksum", "record_batch": (blob[:-1] + bytes([blob[-1] ^ 1])).hex()},
        ],
    }


def decode_query_component(text: str) -> str:
    """Decode a query name or value with the standard library, the second implementation."""
    if re.search(r"%(?![0-9A-Fa-f]{2})", text):
        raise ValueError("invalid_escape")
    try:
        return urllib.parse.unquote_to_bytes(text.replace("+", " ")).decode("utf-8")
    except UnicodeDecodeError:
        raise ValueError("invalid_utf8") from None


def query_component_cases() -> dict:
    """Return query names and values with their decoded text or the reason they do not decode."""
    inputs = [
        "plain",
        "",
        "a+b",
        "a%2Bb",
        "%2b%2B",
        "%E2%82%AC",
        "%e2%82%ac",
        "%41%62",
        "https%3A%2F%2Fshop.example%2Fa%3Fb%3D1%26c%3D2",
        "caf\u00e9",
        "%F0%9F%8E%89",
        "100%25",
        "+++",
        "%",
        "%z1",
        "%1",
        "a%G0",
        "a%4",
        "%C3%28",
        "%ED%A0%80",
        "%FF",
        "%FF%zz",
        "%C3",
        "%C0%AF",
    ]
    decoded, rejected = [], []
    for text in inputs:
        try:
            decoded.append({"raw": text, "decoded": decode_query_component(text)})
        except ValueError as error:
            rejected.append({"raw": text, "error": str(error)})
    return {
        "source": "urllib.parse.unquote_to_bytes after replacing + with a space",
        "decoded": decoded,
        "rejected": rejected,
    }


def main() -> None:
    write("hmac_sha256_rfc4231.json", {"source": "RFC 4231 section 4", "cases": rfc4231_cases()})
    write("click_urls.json", click_cases())
    write("encrypted_urls.json", encrypted_cases())
    write("uuid7_rfc9562.json", uuid7_cases())
    write("partition.json", partition_cases())
    write("record_batch.json", record_batch_case())
    write("query_components.json", query_component_cases())


if __name__ == "__main__":
    main()
