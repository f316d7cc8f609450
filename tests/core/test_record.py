"""Record batches: round trips, an independent decoder and corrupt or hostile blobs."""

from __future__ import annotations

import contextlib
import struct

import pytest
import zstandard
from hypothesis import given
from hypothesis import strategies as st

from tracker import _core

DOCUMENTS = st.lists(
    st.binary(min_size=1, max_size=200).filter(lambda raw: b"\n" not in raw), max_size=30
)


@given(events=DOCUMENTS)
def test_record_batch_round_trips(events: list[bytes]) -> None:
    blob = _core.encode_record_batch(events)
    assert blob[0] == 1
    assert struct.unpack(">I", blob[1:5])[0] == len(events)
    assert _core.decode_record_batch(blob) == events
    payload = zstandard.ZstdDecompressor().decompress(blob[5:])
    assert payload == b"".join(event + b"\n" for event in events)


def test_decodes_frame_from_independent_encoder() -> None:
    events = [b'{"a":1}', b'{"b":2}']
    frame = zstandard.ZstdCompressor(level=3).compress(b'{"a":1}\n{"b":2}\n')
    assert _core.decode_record_batch(b"\x01" + struct.pack(">I", 2) + frame) == events


def test_encode_rejects_newline_and_empty() -> None:
    with pytest.raises(_core.RecordBatchError, match="event 1 contains a newline"):
        _core.encode_record_batch([b"{}", b'{"a":\n1}'])
    with pytest.raises(_core.RecordBatchError, match="event 0 is empty"):
        _core.encode_record_batch([b""])


def test_empty_batch_round_trips() -> None:
    assert _core.decode_record_batch(_core.encode_record_batch([])) == []


def rle_bomb(total_bytes: int) -> bytes:
    """Build a zstd frame of RLE blocks that decompresses to `total_bytes` zeros.

    RFC 8878: a frame header without a content size and a 128 KiB window, then
    blocks whose 3-byte header sets Block_Type 1 (RLE) and the repeat count.
    """
    block = 128 * 1024
    frame = bytearray(b"\x28\xb5\x2f\xfd")
    frame += bytes([0x00, 7 << 3])
    remaining = total_bytes
    while remaining > 0:
        size = min(block, remaining)
        remaining -= size
        header = (size << 3) | (1 << 1) | (1 if remaining == 0 else 0)
        frame += header.to_bytes(3, "little") + b"\x00"
    return bytes(frame)


def test_rle_bomb_helper_is_valid_zstd() -> None:
    small = rle_bomb(300_000)
    decompressed = zstandard.ZstdDecompressor().decompressobj().decompress(small)
    assert decompressed == bytes(300_000)


def test_decompression_bomb_capped() -> None:
    blob = b"\x01" + struct.pack(">I", 1) + rle_bomb(256 * 1024 * 1024 + 128 * 1024)
    assert len(blob) < 16 * 1024
    with pytest.raises(_core.RecordBatchError, match="more than 268435456 bytes"):
        _core.decode_record_batch(blob)


@given(raw=st.binary(max_size=200))
def test_random_bytes_raise_record_batch_error(raw: bytes) -> None:
    try:
        events = _core.decode_record_batch(raw)
    except _core.RecordBatchError:
        return
    assert all(b"\n" not in event for event in events)


@given(data=st.data())
def test_mutated_batch_never_crashes(data: st.DataObject) -> None:
    blob = bytearray(_core.encode_record_batch([b'{"event":1}', b'{"event":2}']))
    for _ in range(data.draw(st.integers(min_value=1, max_value=4))):
        position = data.draw(st.integers(min_value=0, max_value=len(blob) - 1))
        blob[position] = data.draw(st.integers(min_value=0, max_value=255))
    cut = data.draw(st.integers(min_value=0, max_value=len(blob)))
    with contextlib.suppress(_core.RecordBatchError):
        _core.decode_record_batch(bytes(blob[:cut]))


def test_count_mismatch_reported() -> None:
    blob = bytearray(_core.encode_record_batch([b"{}", b"{}"]))
    blob[1:5] = struct.pack(">I", 3)
    with pytest.raises(_core.RecordBatchError, match="gives 3 events but the payload contains 2"):
        _core.decode_record_batch(bytes(blob))


def test_bytes_only_accepted() -> None:
    with pytest.raises(TypeError):
        _core.decode_record_batch("text")  # type: ignore[arg-type]
