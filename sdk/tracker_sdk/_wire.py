"""Byte-level codecs for click URLs: the signature message and the encrypted blob.

Both formats are specified in the platform's docs/formats.md. Integers are big-endian and
strings are UTF-8. The server verifies exactly these bytes, so any change here breaks every
link already handed out.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import re
import struct
from collections.abc import Sequence

SIGNATURE_DOMAIN = b"tracker-click-v1"
BLOB_DOMAIN = b"tracker-d-v1"
BLOB_VERSION = 1
NONCE_LEN = 12
KEY_LEN = 32
MAX_KEY_PREFIX_LEN = 32
# The wire field is a u64, but the platform's extension reads expires_at as a signed
# 64-bit int, so larger values could never be verified.
MAX_EXPIRES_AT = 2**63 - 1

_KEY_PREFIX = re.compile(r"[a-z0-9]{1,32}")


def check_key_prefix(key_prefix: str) -> str:
    """Return `key_prefix` unchanged, or raise ValueError if it is not 1-32 of [a-z0-9]."""
    if not isinstance(key_prefix, str) or not _KEY_PREFIX.fullmatch(key_prefix):
        raise ValueError(
            f"invalid key_prefix {_clip(key_prefix)!r}: expected 1 to 32 characters of [a-z0-9]"
        )
    return key_prefix


def check_expires_at(expires_at: int | None) -> int:
    """Return the u64 wire value of `expires_at` (0 means no expiry)."""
    if expires_at is None:
        return 0
    if isinstance(expires_at, bool) or not isinstance(expires_at, int):
        raise TypeError(
            f"expires_at must be an int of Unix seconds, got {type(expires_at).__name__}"
        )
    if not 0 < expires_at <= MAX_EXPIRES_AT:
        raise ValueError(f"invalid expires_at {expires_at}: expected Unix seconds in 1..2**63-1")
    return expires_at


def signature_message(
    destination: str,
    *,
    key_prefix: str | None,
    covered: Sequence[tuple[str, str]],
    expires_at: int | None,
) -> bytes:
    """Return the bytes an HMAC click signature covers; covered params are sorted by name bytes."""
    prefix = b"" if key_prefix is None else check_key_prefix(key_prefix).encode()
    encoded = sorted((name.encode(), value.encode()) for name, value in covered)

    parts = [SIGNATURE_DOMAIN, _u32_bytes(prefix), _u32_bytes(destination.encode())]
    parts.append(struct.pack(">Q", check_expires_at(expires_at)))
    parts.append(struct.pack(">I", len(encoded)))
    for name, value in encoded:
        parts.append(_u32_bytes(name))
        parts.append(_u32_bytes(value))
    return b"".join(parts)


def sign(
    secret: bytes,
    destination: str,
    *,
    key_prefix: str | None,
    covered: Sequence[tuple[str, str]],
    expires_at: int | None,
) -> str:
    """Return the `sig` value: `<key_prefix>_<64 hex>`, or the bare hex without a prefix."""
    message = signature_message(
        destination, key_prefix=key_prefix, covered=covered, expires_at=expires_at
    )
    digest = hmac.new(secret, message, hashlib.sha256).hexdigest()
    return digest if key_prefix is None else f"{key_prefix}_{digest}"


def encrypt(
    key: bytes,
    key_id: int,
    destination: str,
    *,
    key_prefix: str | None,
    hidden: Sequence[tuple[str, str]],
    expires_at: int | None,
    nonce: bytes | None,
) -> str:
    """Return the `d` value: `[<key_prefix>.]<unpadded base64url blob>` (AES-256-GCM)."""
    try:
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM
    except ImportError as error:
        raise ImportError(
            "encrypted click URLs need the 'cryptography' package: install tracker-sdk[encrypted]"
        ) from error

    if len(key) != KEY_LEN:
        raise ValueError(f"invalid key: expected {KEY_LEN} bytes, got {len(key)}")
    if isinstance(key_id, bool) or not isinstance(key_id, int) or not 0 <= key_id <= 255:
        raise ValueError(f"invalid key_id {key_id!r}: expected an int in 0..255")
    if nonce is None:
        nonce = os.urandom(NONCE_LEN)
    elif len(nonce) != NONCE_LEN:
        raise ValueError(f"invalid nonce: expected {NONCE_LEN} bytes, got {len(nonce)}")

    prefix = b"" if key_prefix is None else check_key_prefix(key_prefix).encode()
    associated = BLOB_DOMAIN + bytes([len(prefix)]) + prefix + bytes([BLOB_VERSION, key_id])
    plaintext = _blob_plaintext(destination, hidden, expires_at)
    sealed = AESGCM(key).encrypt(nonce, plaintext, associated)

    blob = bytes([BLOB_VERSION, key_id]) + nonce + sealed
    text = base64.urlsafe_b64encode(blob).rstrip(b"=").decode("ascii")
    return text if key_prefix is None else f"{key_prefix}.{text}"


def _blob_plaintext(
    destination: str, hidden: Sequence[tuple[str, str]], expires_at: int | None
) -> bytes:
    if len(hidden) > 0xFFFF:
        raise ValueError(f"too many hidden_params: {len(hidden)}, the maximum is 65535")
    parts = [struct.pack(">QH", check_expires_at(expires_at), len(hidden))]
    seen: set[str] = set()
    for name, value in hidden:
        # The server rejects a blob that names a param twice.
        if name in seen:
            raise ValueError(f"hidden param {_clip(name)!r} is given twice")
        seen.add(name)
        parts.append(_u16_bytes(name.encode(), "hidden param name"))
        parts.append(_u16_bytes(value.encode(), f"hidden param {_clip(name)!r}"))
    parts.append(destination.encode())
    return b"".join(parts)


def _u32_bytes(data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + data


def _u16_bytes(data: bytes, what: str) -> bytes:
    if len(data) > 0xFFFF:
        raise ValueError(f"{what} is {len(data)} bytes, the maximum is 65535")
    return struct.pack(">H", len(data)) + data


def _clip(value: object, limit: int = 50) -> str:
    """Return `value` as text cut to `limit` characters, for echoing input in messages."""
    text = value if isinstance(value, str) else repr(value)
    return text if len(text) <= limit else text[:limit] + "..."
