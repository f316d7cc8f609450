"""A subprocess that runs the iggy backend and producer against a closed port.

Run as `python -m tests.broker.iggy_unreachable_process DATA_DIR PORT`; it
prints one JSON object of observations for the calling test to check. It runs
in its own process because apache-iggy 0.9.0 sometimes aborts the interpreter
at exit after a failed connect, which must not take the test runner down.
"""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path

import orjson

from tracker.broker.iggy import IggyBroker
from tracker.broker.producer import Producer
from tracker.broker.settings import BrokerSettings
from tracker.errors import BrokerError, BrokerUnavailable


async def probe_broker(settings: BrokerSettings) -> dict[str, object]:
    broker = IggyBroker(settings)
    started = time.monotonic()
    try:
        await broker.connect()
        connect_error = None
    except BrokerUnavailable as error:
        connect_error = str(error)
    seconds = time.monotonic() - started
    try:
        await broker.publish("events", 0, [b"x"])
        publish_error = None
    except BrokerError as error:
        publish_error = type(error).__name__
    return {
        "connect_error": connect_error,
        "connect_seconds": seconds,
        "healthy": await broker.healthy(),
        "publish_error": publish_error,
    }


def main(data_dir: Path, port: int) -> None:
    settings = BrokerSettings(
        backend="iggy",
        data_dir=data_dir,
        partitions=4,
        iggy_url=f"127.0.0.1:{port}",
        iggy_timeout_seconds=2.0,
        reconnect_seconds=3600.0,
        retention_interval_seconds=0.0,
        local_sync="normal",
    )
    observations = asyncio.run(probe_broker(settings))

    producer = Producer.from_settings(settings)
    producer.start()
    futures = [
        producer.submit_event(i % 4, orjson.dumps({"event_id": f"u-{i}"})) for i in range(20)
    ]
    for future in futures:
        future.result(timeout=30)
    state = producer.state()
    observations.update(
        state=state.state,
        backend=state.backend,
        spool_events=state.spool_events,
        spool_messages=state.spool_messages,
        forwarded=producer.forward_now(timeout=30),
        state_after_forward=producer.state().state,
        closed_cleanly=producer.close(timeout=30),
    )
    sys.stdout.write(orjson.dumps(observations).decode() + "\n")
    sys.stdout.flush()


if __name__ == "__main__":
    main(Path(sys.argv[1]), int(sys.argv[2]))
