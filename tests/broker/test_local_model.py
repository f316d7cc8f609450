"""Property test: the local log behaves like a list per partition under random operations."""

from __future__ import annotations

import asyncio
import tempfile
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from tracker.broker.base import TOPIC_EVENTS
from tracker.broker.local import LocalBroker
from tracker.broker.settings import BrokerSettings

PARTITIONS = 2

operations = st.lists(
    st.one_of(
        st.tuples(
            st.just("publish"),
            st.integers(0, PARTITIONS - 1),
            st.lists(st.binary(max_size=20), max_size=4),
        ),
        st.tuples(st.just("commit"), st.integers(0, PARTITIONS - 1), st.integers(0, 30)),
        st.tuples(st.just("truncate"), st.integers(0, PARTITIONS - 1), st.integers(-1, 30)),
    ),
    max_size=25,
)


async def run(steps: list[tuple[str, int, object]], root: Path) -> None:
    broker = LocalBroker(
        BrokerSettings(
            data_dir=root, partitions=PARTITIONS, local_sync="normal", retention_interval_seconds=0
        )
    )
    await broker.connect()
    stored: dict[int, dict[int, bytes]] = {p: {} for p in range(PARTITIONS)}
    next_offset = dict.fromkeys(range(PARTITIONS), 0)
    committed: dict[int, int | None] = dict.fromkeys(range(PARTITIONS))
    try:
        for action, partition, argument in steps:
            if action == "publish":
                assert isinstance(argument, list)
                await broker.publish(TOPIC_EVENTS, partition, argument)
                for payload in argument:
                    stored[partition][next_offset[partition]] = payload
                    next_offset[partition] += 1
            elif action == "commit":
                assert isinstance(argument, int)
                if argument < next_offset[partition]:
                    await broker.commit(TOPIC_EVENTS, "g", partition, argument)
                    committed[partition] = argument
            else:
                assert isinstance(argument, int)
                await broker.truncate(TOPIC_EVENTS, partition, argument)
                stored[partition] = {o: p for o, p in stored[partition].items() if o > argument}

        for partition in range(PARTITIONS):
            messages = await broker.read(TOPIC_EVENTS, partition, 0, 1000)
            assert {m.offset: m.payload for m in messages} == stored[partition]
            assert [m.offset for m in messages] == sorted(stored[partition])
            end = await broker.end_offset(TOPIC_EVENTS, partition)
            assert end == (next_offset[partition] - 1 if next_offset[partition] else None)
            assert await broker.committed(TOPIC_EVENTS, "g", partition) == committed[partition]
            start = 0 if committed[partition] is None else committed[partition] + 1
            polled = await broker.poll(TOPIC_EVENTS, "g", partition, 1000)
            assert [m.offset for m in polled] == [
                o for o in sorted(stored[partition]) if o >= start
            ]
    finally:
        await broker.close()


@settings(max_examples=30, deadline=None)
@given(operations)
def test_log_matches_list_model(steps: list[tuple[str, int, object]]) -> None:
    with tempfile.TemporaryDirectory() as directory:
        asyncio.run(run(steps, Path(directory)))
