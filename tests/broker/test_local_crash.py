"""Kill -9 of a publishing or producing process: every acknowledged publish is readable afterwards."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from pathlib import Path

import orjson
import pytest

from tests.broker.conftest import PARTITIONS
from tracker._core import decode_record_batch
from tracker.broker.base import TOPIC_EVENTS
from tracker.broker.local import LocalBroker
from tracker.broker.settings import BrokerSettings

REPO = Path(__file__).resolve().parents[2]


async def _stored(data_dir: Path) -> dict[tuple[int, int], bytes]:
    broker = LocalBroker(
        BrokerSettings(data_dir=data_dir, partitions=PARTITIONS, retention_interval_seconds=0)
    )
    await broker.connect()
    try:
        stored = {}
        for partition in range(PARTITIONS):
            messages = await broker.read(TOPIC_EVENTS, partition, 0, 1_000_000)
            assert [m.offset for m in messages] == list(range(len(messages)))
            stored.update({(partition, m.offset): m.payload for m in messages})
        return stored
    finally:
        await broker.close()


@pytest.mark.parametrize("sync", ["normal", "full"])
def test_acknowledged_publishes_survive_kill(data_dir: Path, sync: str) -> None:
    child = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tests.broker.publisher_process",
            str(data_dir),
            str(PARTITIONS),
            "k",
            "1000000",
            sync,
        ],
        cwd=REPO,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert child.stdout is not None
    acknowledged = []
    for line in child.stdout:
        acknowledged.append(line.split())
        if len(acknowledged) == 300:
            break
    os.kill(child.pid, signal.SIGKILL)
    rest, _ = child.communicate(timeout=30)
    # Each line is one write() far below PIPE_BUF, so a line without its newline never occurs;
    # dropping the unterminated tail anyway keeps the check honest.
    acknowledged.extend(line.split() for line in rest.split("\n")[:-1])
    assert child.returncode == -signal.SIGKILL

    stored = asyncio.run(_stored(data_dir))

    assert len(acknowledged) >= 300
    for partition, offset, payload in acknowledged:
        assert stored.get((int(partition), int(offset))) == payload.encode()


def test_durable_producer_events_survive_kill(data_dir: Path) -> None:
    child = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tests.broker.producer_process",
            str(data_dir),
            str(PARTITIONS),
            "normal",
        ],
        cwd=REPO,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert child.stdout is not None
    durable = []
    for line in child.stdout:
        durable.append(line.strip())
        if len(durable) == 1000:
            break
    os.kill(child.pid, signal.SIGKILL)
    rest, _ = child.communicate(timeout=30)
    durable.extend(rest.split("\n")[:-1])

    stored = asyncio.run(_stored(data_dir))
    stored_ids = [
        orjson.loads(event)["event_id"]
        for payload in stored.values()
        for event in decode_record_batch(payload)
    ]

    assert len(durable) >= 1000
    assert set(durable) <= set(stored_ids)
    assert len(stored_ids) == len(set(stored_ids))
