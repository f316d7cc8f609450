"""Re-publishing archived events from the Delta table to a broker topic.

After an outage of the hot tier (or a lost warm store) the archive still holds every clean
event. `replay` reads a time range of it, rebuilds each event's JSON exactly as ingest wrote
it (same event_id and timestamp), and publishes record batches to a topic, by default
`events-replay`, so the archive itself never reads its own output back. Sinks that dedup on
`event_id` (the hot writer, the stats ledger) can then be pointed at that topic; an event
they already hold is skipped.
"""

from __future__ import annotations

import datetime
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass

import pyarrow.dataset as ds
from deltalake import DeltaTable
from deltalake.exceptions import TableNotFoundError

from tracker import _core
from tracker.broker.base import Broker
from tracker.errors import ConfigError

__all__ = ["ReplayReport", "count_events", "replay_events"]

READ_BATCH_ROWS = 10_000
RECORD_BATCH_EVENTS = 1_000
# Archived events were validated at ingest; these limits only keep the rebuild from refusing them.
_LIMITS = _core.EventLimits(
    max_params=10_000, max_key_len=1 << 20, max_value_len=1 << 24, max_field_len=1 << 24
)
_STRING_FIELDS = ("ip", "user_agent", "referer", "accept_language", "request_path", "request_host")


@dataclass(frozen=True)
class ReplayReport:
    """What a replay read and published."""

    topic: str
    events: int
    record_batches: int
    partitions: int


def _open_table(uri: str, storage_options: dict[str, str]) -> DeltaTable:
    try:
        return DeltaTable(uri, storage_options=storage_options or None)
    except TableNotFoundError:
        raise ConfigError(
            "ARCHIVE_URI", f"no Delta table at {uri}; has the archiver run?"
        ) from None


def _days(start_ms: int, end_ms: int) -> list[str]:
    first = datetime.datetime.fromtimestamp(start_ms / 1000, datetime.UTC).date()
    last = datetime.datetime.fromtimestamp((end_ms - 1) / 1000, datetime.UTC).date()
    return [
        (first + datetime.timedelta(days=n)).isoformat() for n in range((last - first).days + 1)
    ]


def _filter(start_ms: int, end_ms: int, tenant: str | None) -> ds.Expression:
    expression = (
        ds.field("date").isin(_days(start_ms, end_ms))
        & (ds.field("timestamp") >= start_ms)
        & (ds.field("timestamp") < end_ms)
    )
    if tenant is not None:
        expression &= ds.field("key_prefix") == tenant
    return expression


def _check_range(start_ms: int, end_ms: int) -> None:
    if end_ms <= start_ms:
        raise ConfigError("--to", "must be later than --from")


def count_events(
    uri: str, storage_options: dict[str, str], *, start_ms: int, end_ms: int, tenant: str | None
) -> int:
    """Count the archived events a replay of this range would publish."""
    _check_range(start_ms, end_ms)
    dataset = _open_table(uri, storage_options).to_pyarrow_dataset()
    return dataset.count_rows(filter=_filter(start_ms, end_ms, tenant))


def _event_documents(
    uri: str, storage_options: dict[str, str], start_ms: int, end_ms: int, tenant: str | None
) -> Iterator[tuple[str, bytes]]:
    dataset = _open_table(uri, storage_options).to_pyarrow_dataset()
    columns = ["event_id", "event_type", "timestamp", *_STRING_FIELDS, "params", "key_prefix"]
    scanner = dataset.scanner(
        columns=columns, filter=_filter(start_ms, end_ms, tenant), batch_size=READ_BATCH_ROWS
    )
    for batch in scanner.to_batches():
        for row in batch.to_pylist():
            _, document = _core.build_event(
                row["event_type"],
                row["params"] or [],
                ip=row["ip"],
                user_agent=row["user_agent"],
                referer=row["referer"],
                accept_language=row["accept_language"],
                request_path=row["request_path"],
                request_host=row["request_host"],
                limits=_LIMITS,
                event_id=row["event_id"],
                timestamp=row["timestamp"],
            )
            yield row["key_prefix"], document


async def replay_events(
    broker: Broker,
    uri: str,
    storage_options: dict[str, str],
    *,
    topic: str,
    start_ms: int,
    end_ms: int,
    tenant: str | None,
) -> ReplayReport:
    """Publish the archived events of [start_ms, end_ms) to `topic`, partitioned by tenant."""
    _check_range(start_ms, end_ms)
    pending: dict[int, list[bytes]] = defaultdict(list)
    events = record_batches = 0
    touched: set[int] = set()

    async def flush(partition: int) -> None:
        nonlocal record_batches
        documents = pending.pop(partition, [])
        if documents:
            await broker.publish(topic, partition, [_core.encode_record_batch(documents)])
            record_batches += 1

    for key_prefix, document in _event_documents(uri, storage_options, start_ms, end_ms, tenant):
        partition = _core.partition_for(key_prefix, broker.partitions)
        pending[partition].append(document)
        touched.add(partition)
        events += 1
        if len(pending[partition]) >= RECORD_BATCH_EVENTS:
            await flush(partition)
    for partition in list(pending):
        await flush(partition)
    return ReplayReport(
        topic=topic, events=events, record_batches=record_batches, partitions=len(touched)
    )
