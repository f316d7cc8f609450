"""Page cursors: round trip, and forged, edited, foreign or malformed cursors raise QueryError."""

from __future__ import annotations

import base64

import orjson
import pytest

from tracker.errors import QueryError
from tracker.query.cursor import CursorCodec

CODEC = CursorCodec(b"c" * 32)


def test_cursor_round_trip() -> None:
    cursor = CODEC.encode("alpha", 1_795_132_800_000, "019c4633-5078-7411-8858-4aeafb6298bb")
    assert CODEC.decode("alpha", cursor) == (
        1_795_132_800_000,
        "019c4633-5078-7411-8858-4aeafb6298bb",
    )


def test_cursor_other_tenant_rejected() -> None:
    cursor = CODEC.encode("alpha", 5, "x")
    with pytest.raises(QueryError) as error:
        CODEC.decode("beta", cursor)
    assert error.value.code == "invalid_cursor"
    assert "another tenant" in str(error.value)


def test_cursor_other_key_rejected() -> None:
    cursor = CursorCodec(b"d" * 32).encode("alpha", 5, "x")
    with pytest.raises(QueryError) as error:
        CODEC.decode("alpha", cursor)
    assert "signature" in str(error.value)


def test_cursor_edited_payload_rejected() -> None:
    _, tag = CODEC.encode("alpha", 5, "x").split(".")
    forged = (
        base64.urlsafe_b64encode(orjson.dumps({"v": 1, "t": "beta", "ts": 5, "id": "x"}))
        .rstrip(b"=")
        .decode()
    )
    with pytest.raises(QueryError):
        CODEC.decode("beta", f"{forged}.{tag}")


@pytest.mark.parametrize(
    "cursor", ["", ".", "abc", "abc.", ".abc", "!!!.???", "a.b.c", "é.é", "A" * 1000 + ".x"]
)
def test_cursor_malformed_rejected(cursor: str) -> None:
    with pytest.raises(QueryError) as error:
        CODEC.decode("alpha", cursor)
    assert error.value.code == "invalid_cursor"
    assert error.value.field == "cursor"
