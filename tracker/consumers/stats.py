"""The stats consumer: exact per-tenant event counts in the registry's idempotent ledger.

It reads `events-clean` by default (`STATS_SOURCE_TOPIC=events` counts unfiltered
traffic instead) and stores, per batch and in one registry transaction, the new event
ids, the counter increments for those ids only, and the batch's offset. The runtime
resumes from that stored offset, so counts stay exact across crashes and
redeliveries. Queries live in `tracker.registry.ledger`.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np

from tracker.broker.base import TOPIC_EVENTS, TOPIC_EVENTS_CLEAN
from tracker.consumers.columns import EventColumns, read_columns
from tracker.consumers.runtime import Batch, Sink, SinkContext
from tracker.errors import RetryableSinkError
from tracker.registry.ledger import committed_offsets, prune_ledger, record_events
from tracker.settings import Env

__all__ = ["StatsSettings", "StatsSink", "create_sink"]

logger = logging.getLogger(__name__)

# The fields a ledger row needs, in `LedgerRow` order. The timestamp gives the hour.
FIELDS = ("event_id", "params.key_prefix", "event_type", "params.tu_id")


@dataclass(frozen=True, slots=True)
class StatsSettings:
    """Source topic and ledger pruning of the stats consumer."""

    source_topic: str = TOPIC_EVENTS_CLEAN
    ledger_window_hours: int = 168
    prune_interval_seconds: float = 300.0

    @classmethod
    def from_env(cls, env: Env) -> StatsSettings:
        return cls(
            source_topic=env.choice(
                "STATS_SOURCE_TOPIC", TOPIC_EVENTS_CLEAN, (TOPIC_EVENTS, TOPIC_EVENTS_CLEAN)
            ),
            ledger_window_hours=env.int("STATS_LEDGER_WINDOW_HOURS", 168, minimum=1),
            prune_interval_seconds=env.float("STATS_PRUNE_INTERVAL_SECONDS", 300.0, minimum=1.0),
        )


def ledger_input(
    columns: EventColumns,
) -> tuple[list[str], np.ndarray, list[tuple[str, str, str, int]]]:
    """Return the batch's distinct event ids, the counter group of each, and the groups.

    A group is (key_prefix, event_type, tu_id, hour). A repeated id counts once, in
    the group of its last occurrence, as `record_batch` does with rows.
    """
    ids = columns["event_id"]
    events = np.flatnonzero(columns.valid)
    if not columns.problems and len(ids.values) == len(events):
        event_ids = ids.values
    else:
        # The first occurrence of each code in the reversed batch is its last one.
        _, first_reversed = np.unique(ids.codes[events][::-1], return_index=True)
        events = np.sort(events[len(events) - 1 - first_reversed])
        event_ids = [ids.values[code] for code in ids.codes[events].tolist()]

    # Number the distinct (tenant, type, tu_id, hour) combinations one field at a time,
    # so every key stays below the squared batch size, far inside int64.
    tenants = columns["params.key_prefix"]
    types = columns["event_type"]
    tu_ids = columns["params.tu_id"]
    hours = columns.timestamps[events] // 3_600_000 * 3600
    hour_values, hour_codes = np.unique(hours, return_inverse=True)
    key = tenants.codes[events].astype(np.int64)
    first = group_of = np.arange(len(events))
    for codes, size in (
        (types.codes[events], len(types.values)),
        (tu_ids.codes[events], len(tu_ids.values)),
        (hour_codes, len(hour_values)),
    ):
        _, first, group_of = np.unique(key * size + codes, return_index=True, return_inverse=True)
        key = group_of.astype(np.int64)

    heads = events[first]
    groups = list(
        zip(
            [tenants.values[code] for code in tenants.codes[heads].tolist()],
            [types.values[code] for code in types.codes[heads].tolist()],
            [tu_ids.values[code] for code in tu_ids.codes[heads].tolist()],
            hours[first].tolist(),
            strict=True,
        )
    )
    return event_ids, group_of, groups


def create_sink(env: Env) -> StatsSink:
    return StatsSink(StatsSettings.from_env(env))


class StatsSink(Sink):
    """Counts each distinct event once per tenant, event type, `tu_id` and hour."""

    name = "stats"
    decode_events = False

    def __init__(self, settings: StatsSettings) -> None:
        self.settings = settings
        self.source_topic = settings.source_topic
        # One thread owns the registry connection, so SQLite never blocks the event loop.
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="stats-registry")
        self._registry: Any = None
        self._last_prune = float("-inf")

    async def open(self, context: SinkContext) -> None:
        self._registry = await self._call(lambda: context.registry)

    async def close(self) -> None:
        self._executor.shutdown(wait=True)

    async def stored_offsets(self) -> dict[int, int]:
        return await self._call(
            lambda: committed_offsets(self._registry.connection(), self.name, self.source_topic)
        )

    async def process(self, batch: Batch) -> None:
        columns = read_columns(batch.raw, FIELDS)
        for index, problem in columns.problems.items():
            batch.dead_letter(index, problem)
        event_ids, group_of, groups = ledger_input(columns)

        def write() -> int:
            return record_events(
                self._registry.connection(),
                event_ids,
                group_of,
                groups,
                consumer=self.name,
                topic=self.source_topic,
                partition=batch.partition,
                last_offset=batch.last_offset,
            )

        try:
            new = await self._call(write)
        except sqlite3.OperationalError as error:
            # Locked or busy database, or a transient I/O error: the transaction rolled back.
            raise RetryableSinkError(f"registry write failed: {error}") from error
        logger.debug(
            "Recorded stats batch.",
            extra={"partition": batch.partition, "events": len(event_ids), "new": new},
        )
        await self._maybe_prune()

    async def _maybe_prune(self) -> None:
        now = time.monotonic()
        if now - self._last_prune < self.settings.prune_interval_seconds:
            return
        self._last_prune = now
        cutoff = int(time.time()) - self.settings.ledger_window_hours * 3600
        try:
            deleted = await self._call(lambda: prune_ledger(self._registry.connection(), cutoff))
        except sqlite3.OperationalError as error:
            logger.warning(
                "Ledger pruning failed; retrying at the next interval.", extra={"error": str(error)}
            )
            return
        if deleted:
            logger.info(
                "Pruned stats ledger.", extra={"deleted": deleted, "recorded_before": cutoff}
            )

    async def _call(self, function: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self._executor, function)
