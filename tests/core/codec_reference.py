"""Independent Python builds of the click message and `d` blob, for differential tests."""

from __future__ import annotations

import base64
import struct

from cryptography.hazmat.primitives.ciphers.aead import AESGCM


def python_click_message(
    destination: str,
    key_prefix: str | None,
    params: list[tuple[str, str]],
    expires_at: int | None,
) -> bytes:
    def field(value: bytes) -> bytes:
        return struct.pack(">I", len(value)) + value

    covered = sorted(params, key=lambda pair: pair[0].encode())
    message = b"tracker-click-v1" + field((key_prefix or "").encode()) + field(destination.encode())
    message += struct.pack(">QI", expires_at or 0, len(covered))
    for name, value in covered:
        message += field(name.encode()) + field(value.encode())
    return message


def python_d_aad(key_prefix: str | None, key_id: int) -> bytes:
    prefix = (key_prefix or "").encode()
    return b"tracker-d-v1" + bytes([len(prefix)]) + prefix + bytes([1, key_id])


def python_open_d(key: bytes, d: str) -> tuple[int, list[tuple[str, str]], str]:
    """Decrypt a `d` value with `cryptography`; return (expires_at, params, destination)."""
    key_prefix, _, blob = d.rpartition(".")
    raw = base64.urlsafe_b64decode(blob + "=" * (-len(blob) % 4))
    plaintext = AESGCM(key).decrypt(raw[2:14], raw[14:], python_d_aad(key_prefix or None, raw[1]))
    expires_at, count = struct.unpack_from(">QH", plaintext)
    offset = 10
    params = []
    for _ in range(count):
        parts = []
        for _ in range(2):
            (length,) = struct.unpack_from(">H", plaintext, offset)
            parts.append(plaintext[offset + 2 : offset + 2 + length].decode())
            offset += 2 + length
        params.append((parts[0], parts[1]))
    return expires_at, params, plaintext[offset:].decode()
