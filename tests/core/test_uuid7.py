"""UUIDv7: format, monotonic order within a millisecond and across threads."""

from __future__ import annotations

import threading
import uuid

import uuid_utils

from tracker import _core


def test_uuid7_is_lowercase_rfc_version_7() -> None:
    value = _core.uuid7()
    parsed = uuid.UUID(value)
    assert str(parsed) == value
    assert parsed.version == 7
    assert parsed.variant == uuid.RFC_4122


def test_uuid7_timestamp_matches_clock() -> None:
    before = _core.now_ms()
    value = _core.uuid7()
    after = _core.now_ms()
    assert before <= _core.uuid7_timestamp_ms(value) <= after + 1
    assert uuid_utils.UUID(value).timestamp == _core.uuid7_timestamp_ms(value)


def test_uuid7_strictly_increasing_in_one_ms() -> None:
    values = [_core.uuid7() for _ in range(50_000)]
    assert values == sorted(values)
    assert len(set(values)) == len(values)
    timestamps = [_core.uuid7_timestamp_ms(value) for value in values]
    assert timestamps == sorted(timestamps)
    # 50,000 ids take a few milliseconds, so many share one millisecond.
    assert len(set(timestamps)) < len(values)


def test_uuid7_counter_overflow_advances_timestamp() -> None:
    # 20,000 ids take well under 4 ms here, so overflowing the 12-bit counter
    # pushes timestamps ahead of the wall clock while order still holds.
    start = _core.now_ms()
    values = [_core.uuid7() for _ in range(20_000)]
    counters = [int(value[15:18], 16) for value in values]
    timestamps = [_core.uuid7_timestamp_ms(value) for value in values]
    assert values == sorted(values)
    assert all(counter < 4096 for counter in counters)
    assert timestamps[0] >= start


def test_uuid7_unique_and_ordered_across_threads() -> None:
    results: list[list[str]] = [[] for _ in range(8)]

    def work(slot: list[str]) -> None:
        for _ in range(10_000):
            slot.append(_core.uuid7())

    threads = [threading.Thread(target=work, args=(slot,)) for slot in results]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    everything = [value for slot in results for value in slot]
    assert len(set(everything)) == len(everything)
    for slot in results:
        assert slot == sorted(slot)


def test_uuid7_random_bits_differ() -> None:
    tails = {_core.uuid7()[19:] for _ in range(1000)}
    assert len(tails) == 1000


def test_uuid7_timestamp_accepts_uppercase() -> None:
    value = _core.uuid7()
    assert _core.uuid7_timestamp_ms(value.upper()) == _core.uuid7_timestamp_ms(value)
