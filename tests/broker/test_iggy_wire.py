"""Tests of the consumer offset requests the iggy backend encodes itself, without a server.

The expected bytes follow the request layouts of the Iggy server 0.9.0 binary
protocol. An offset request is the consumer kind, then string identifiers
(kind 2, length, UTF-8) for consumer, stream and topic, then a partition flag
and a little-endian u32. A CreateTopic request is the stream identifier, the
partition count (u32), the topic name (length, UTF-8) and an options block of
key and value entries (kind, u32 length, bytes).
"""

from __future__ import annotations

import struct

import pytest

from tracker.broker.iggy import IggyBroker, _consumer_request, _create_topic_request
from tracker.broker.settings import BrokerSettings
from tracker.errors import BrokerError, BrokerUnavailable


def test_consumer_request_layout() -> None:
    request = _consumer_request("event-filter", "tracker", "events", 3)

    expected = (
        b"\x01"
        + b"\x02\x0cevent-filter"
        + b"\x02\x07tracker"
        + b"\x02\x06events"
        + b"\x01"
        + struct.pack("<I", 3)
    )
    assert request == expected


def test_consumer_request_utf8_length() -> None:
    request = _consumer_request("gr\u00fcn", "s", "t", 0)

    # "grün" is 4 characters but 5 UTF-8 bytes, and the length byte counts bytes.
    assert request[1:8] == b"\x02\x05gr\xc3\xbcn"


@pytest.mark.parametrize("name", ["", "x" * 256, "\u00e9" * 128])
def test_consumer_request_rejects_bad_name(name: str) -> None:
    with pytest.raises(BrokerError, match="invalid Iggy name"):
        _consumer_request(name, "tracker", "events", 0)


def test_consumer_request_accepts_max_name() -> None:
    request = _consumer_request("x" * 255, "tracker", "events", 0)

    assert request[1:3] == b"\x02\xff"


def test_create_topic_request_layout() -> None:
    request = _create_topic_request("tracker", "events", 24, {"enforce_fsync": "true"})

    expected = (
        b"\x02\x07tracker"
        + struct.pack("<I", 24)
        + b"\x06events"
        + b"\x02"
        + struct.pack("<I", 13)
        + b"enforce_fsync"
        + b"\x02"
        + struct.pack("<I", 4)
        + b"true"
    )
    assert request == expected


def test_create_topic_request_rejects_long_option() -> None:
    with pytest.raises(BrokerError, match="invalid Iggy option"):
        _create_topic_request("tracker", "events", 1, {"k": "v" * 256})


async def test_commit_checks_before_network() -> None:
    broker = IggyBroker(BrokerSettings(partitions=4))

    with pytest.raises(BrokerError, match="offset must be at least 0"):
        await broker.commit("events", "g", 0, -1)
    with pytest.raises(BrokerError, match=r"partition must be in 0\.\.3"):
        await broker.commit("events", "g", 4, 0)
    with pytest.raises(BrokerUnavailable, match="call connect"):
        await broker.commit("events", "g", 0, 0)
    with pytest.raises(BrokerUnavailable, match="call connect"):
        await broker.committed("events", "g", 0)
