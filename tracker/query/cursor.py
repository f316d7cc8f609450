"""Opaque page cursors for event listings, bound to one tenant and signed.

A cursor is `base64url(JSON payload) "." base64url(HMAC-SHA256(key, payload))`
(RFC 2104, unpadded base64url as RFC 4648 section 5). The payload contains the
tenant and the (timestamp, event_id) of the last row served, so a cursor
neither crosses tenants nor can be edited without the key.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets

import orjson

from tracker.errors import QueryError

__all__ = ["CursorCodec"]

_VERSION = 1


def _b64encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _b64decode(text: str) -> bytes:
    padding = "=" * (-len(text) % 4)
    return base64.urlsafe_b64decode(text + padding)


def _invalid(reason: str) -> QueryError:
    return QueryError(
        "invalid_cursor", "cursor", f"cursor is invalid ({reason}): pass next_cursor unchanged"
    )


class CursorCodec:
    """Encodes and verifies cursors with one HMAC key.

    Every process that serves the same tenants must share the key, or cursors
    from one API instance fail on another. Without a key a random one is made,
    which is valid only for the life of this process.
    """

    def __init__(self, key: bytes | None = None) -> None:
        self._key = key if key is not None else secrets.token_bytes(32)

    def _mac(self, payload: bytes) -> bytes:
        return hmac.new(self._key, payload, hashlib.sha256).digest()

    def encode(self, tenant: str, timestamp_ms: int, event_id: str) -> str:
        """Return the cursor that resumes after the row (timestamp_ms, event_id)."""
        payload = orjson.dumps({"v": _VERSION, "t": tenant, "ts": timestamp_ms, "id": event_id})
        return f"{_b64encode(payload)}.{_b64encode(self._mac(payload))}"

    def decode(self, tenant: str, cursor: str) -> tuple[int, str]:
        """Return (timestamp_ms, event_id) of a cursor; QueryError if forged or another tenant's."""
        body, dot, tag = cursor.partition(".")
        if not dot or not body or not tag:
            raise _invalid("malformed")
        try:
            payload = _b64decode(body)
            mac = _b64decode(tag)
        except (binascii.Error, ValueError):
            raise _invalid("malformed") from None
        if not hmac.compare_digest(mac, self._mac(payload)):
            raise _invalid("signature mismatch")

        # The signature is ours from here on, so the payload has the shape encode() wrote.
        data = orjson.loads(payload)
        if data.get("v") != _VERSION:
            raise _invalid("unsupported version")
        if data.get("t") != tenant:
            raise _invalid("issued for another tenant")
        return int(data["ts"]), str(data["id"])
