"""A publishing subprocess for the multi-process and kill -9 tests.

Run as `python -m tests.broker.publisher_process DATA_DIR PARTITIONS NAME COUNT SYNC`.
It appends COUNT messages `NAME:i` round-robin over the partitions, one
append per message, and after each append returned prints
`partition offset payload` and flushes, so every printed line is a publish the
broker acknowledged.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from tracker.broker.local import LocalBroker
from tracker.broker.settings import BrokerSettings


async def publish(data_dir: Path, partitions: int, name: str, count: int, sync: str) -> None:
    settings = BrokerSettings(
        data_dir=data_dir, partitions=partitions, local_sync=sync, retention_interval_seconds=0.0
    )
    broker = LocalBroker(settings)
    await broker.connect()
    try:
        for index in range(count):
            partition = index % partitions
            payload = f"{name}:{index}"
            offset = await broker.append("events", partition, [payload.encode()])
            sys.stdout.write(f"{partition} {offset} {payload}\n")
            sys.stdout.flush()
    finally:
        await broker.close()


if __name__ == "__main__":
    directory, partitions, name, count, sync = sys.argv[1:6]
    asyncio.run(publish(Path(directory), int(partitions), name, int(count), sync))
