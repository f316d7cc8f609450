"""A producing subprocess for the producer kill -9 test.

Run as `python -m tests.broker.producer_process DATA_DIR PARTITIONS SYNC`. It
submits events `e-<i>` in waves of 50 over the partitions, and after each
future resolved prints the event id and flushes, so every printed id is an
event the producer reported durable.
"""

from __future__ import annotations

import sys
from itertools import count
from pathlib import Path

import orjson

from tracker.broker.local import LocalBroker
from tracker.broker.producer import Producer
from tracker.broker.settings import BrokerSettings


def main(data_dir: Path, partitions: int, sync: str) -> None:
    settings = BrokerSettings(
        data_dir=data_dir, partitions=partitions, local_sync=sync, retention_interval_seconds=0.0
    )
    producer = Producer(LocalBroker(settings), settings)
    producer.start()
    numbers = count()
    while True:
        wave = [next(numbers) for _ in range(50)]
        futures = [
            (
                number,
                producer.submit_event(
                    number % partitions, orjson.dumps({"event_id": f"e-{number}"})
                ),
            )
            for number in wave
        ]
        for number, future in futures:
            future.result(timeout=30)
            sys.stdout.write(f"e-{number}\n")
        sys.stdout.flush()


if __name__ == "__main__":
    main(Path(sys.argv[1]), int(sys.argv[2]), sys.argv[3])
