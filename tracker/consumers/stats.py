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

from tracker.broker.base import TOPIC_EVENTS, TOPIC_EVENTS_CLEAN
from tracker.consumers.columns import read_columns
from tracker.consumers.runtime import Batch, Sink, SinkContext
from tracker.errors import RetryableSinkError
from tracker.registry.ledger import committed_offsets, prune_ledger, record_batch
from tracker.settings import Env

__all__ = ["StatsSettings", "StatsSink", "create_sink"]

logger = logging.getLogger(__name__)

# The fields a ledger row needs, in `LedgerRow` order; the timestamp gives the hour.
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
        # Hours are computed as `hour_of` does, for the whole batch at once.
        every_row = zip(
            columns["event_id"].decoded(),
            columns["params.key_prefix"].decoded(),
            columns["event_type"].decoded(),
            columns["params.tu_id"].decoded(),
            (columns.timestamps // 3_600_000 * 3600).tolist(),
            strict=True,
        )
        if columns.problems:
            valid = columns.valid.tolist()
            rows = [row for row, ok in zip(every_row, valid, strict=True) if ok]
        else:
            rows = list(every_row)

        def write() -> int:
            return record_batch(
                self._registry.connection(),
                rows,
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
            extra={"partition": batch.partition, "events": len(rows), "new": new},
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
