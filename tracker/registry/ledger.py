"""The stats ledger: exact event counts per tenant, event type, tracking URL and hour.

Writes come from the stats consumer (`record_events`, or `record_batch` per row), reads from the platform API
(`count_events`, `count_rows`). Tables are created by `schema/011_stats.sql`.

A batch is recorded in one transaction. Its event ids are inserted into
`stats_ledger` with INSERT OR IGNORE, which returns the ids the ledger did not hold
yet, and counters grow only by those. The batch's broker offset is stored in the
same transaction. A batch delivered twice, or replayed after a crash, therefore
changes nothing the second time.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np
import orjson

from tracker.errors import RegistryError

__all__ = [
    "GROUP_COLUMNS",
    "LedgerRow",
    "StatsRow",
    "committed_offsets",
    "count_events",
    "count_rows",
    "prune_ledger",
    "record_batch",
    "record_events",
]

GROUP_COLUMNS = ("event_type", "hour", "tu_id")


class LedgerRow(NamedTuple):
    """One event as the ledger counts it."""

    event_id: str
    key_prefix: str
    event_type: str
    tu_id: str
    hour: int


@dataclass(frozen=True, slots=True)
class StatsRow:
    """One group of a stats query: the group's column values and its event count."""

    group: dict[str, str | int]
    count: int


# The batch's ids travel as one JSON array, so one statement inserts any number of them.
# RETURNING (SQLite 3.35+) lists only the rows inserted, not the ones ignored, and
# json_each is built into SQLite since 3.38.
# tests/registry/test_libsql.py runs it on a local libSQL file (libsql_experimental 0.0.55,
# SQLite 3.45.1) and, when TURSO_TEST_URL is set, on a live sqld (passed on sqld 0.24.33).
_INSERT_IDS = """
INSERT OR IGNORE INTO stats_ledger (event_id, recorded_at)
SELECT value, ? FROM json_each(?)
RETURNING event_id
"""

_ADD_COUNTS = """
INSERT INTO stats_counts (key_prefix, event_type, tu_id, hour, count) VALUES (?, ?, ?, ?, ?)
ON CONFLICT (key_prefix, hour, event_type, tu_id) DO UPDATE SET count = count + excluded.count
"""

_STORE_OFFSET = """
INSERT INTO stats_offsets (consumer, topic, partition, committed, updated_at)
VALUES (?, ?, ?, ?, ?)
ON CONFLICT (consumer, topic, partition) DO UPDATE
SET committed = max(committed, excluded.committed), updated_at = excluded.updated_at
"""


def record_batch(
    connection: Any,
    rows: Iterable[LedgerRow | tuple[str, str, str, str, int]],
    *,
    consumer: str,
    topic: str,
    partition: int,
    last_offset: int,
) -> int:
    """Count the events of one batch that the ledger has not seen; return how many were new.

    `rows` are `LedgerRow`s or plain tuples in the same field order. A repeated
    id counts once, with its last row. See `record_events` for the transaction.
    """
    unique = {row[0]: row for row in rows}
    groups: dict[tuple[Any, ...], int] = {}
    group_of = [groups.setdefault(tuple(row[1:]), len(groups)) for row in unique.values()]
    return record_events(
        connection,
        list(unique),
        group_of,
        list(groups),
        consumer=consumer,
        topic=topic,
        partition=partition,
        last_offset=last_offset,
    )


def record_events(
    connection: Any,
    event_ids: list[str],
    group_of: Sequence[int] | np.ndarray,
    groups: Sequence[tuple[str, str, str, int]],
    *,
    consumer: str,
    topic: str,
    partition: int,
    last_offset: int,
) -> int:
    """Count distinct events by id and counter group; return how many the ledger had not seen.

    `event_ids` must be distinct. Event i adds one to the counter `groups[group_of[i]]`,
    a (key_prefix, event_type, tu_id, hour) tuple, if the ledger does not hold its id.
    Runs one IMMEDIATE transaction on `connection` (a registry connection in
    autocommit mode) and stores `last_offset` for the partition in it. The ledger is
    written inside the transaction, so concurrent writers cannot both count an id.
    """
    group_index = np.asarray(group_of, dtype=np.intp)
    ids = orjson.dumps(event_ids).decode()
    now = int(time.time())
    connection.execute("BEGIN IMMEDIATE")
    try:
        new = connection.execute(_INSERT_IDS, (now, ids)).fetchall()
        if len(new) != len(event_ids):
            position = {event_id: index for index, event_id in enumerate(event_ids)}
            group_index = group_index[
                np.array([position[event_id] for (event_id,) in new], dtype=np.intp)
            ]
        counts = np.bincount(group_index, minlength=len(groups)).tolist()
        connection.executemany(
            _ADD_COUNTS, [(*groups[group], count) for group, count in enumerate(counts) if count]
        )
        connection.execute(_STORE_OFFSET, (consumer, topic, partition, last_offset, now))
        connection.execute("COMMIT")
    except BaseException:
        connection.execute("ROLLBACK")
        raise
    return len(new)


def committed_offsets(connection: Any, consumer: str, topic: str) -> dict[int, int]:
    """Return the stored offset of every partition the consumer has recorded."""
    rows = connection.execute(
        "SELECT partition, committed FROM stats_offsets WHERE consumer = ? AND topic = ?",
        (consumer, topic),
    ).fetchall()
    return {int(partition): int(committed) for partition, committed in rows}


def prune_ledger(connection: Any, recorded_before: int, *, batch_rows: int = 10_000) -> int:
    """Delete ledger ids recorded before `recorded_before` (Unix seconds), in small transactions.

    Returns the number of ids deleted. Counters are kept: only the ability to
    recognise a redelivery of those old events is given up.
    """
    deleted = 0
    while True:
        cursor = connection.execute(
            "DELETE FROM stats_ledger WHERE event_id IN ("
            " SELECT event_id FROM stats_ledger WHERE recorded_at < ? LIMIT ?)",
            (recorded_before, batch_rows),
        )
        deleted += cursor.rowcount
        if cursor.rowcount < batch_rows:
            return deleted


def _where(
    key_prefix: str,
    start_hour: int,
    end_hour: int,
    event_type: str | None,
    tu_id: str | None,
) -> tuple[str, list[Any]]:
    if end_hour < start_hour:
        raise RegistryError(f"end_hour {end_hour} is before start_hour {start_hour}")
    clauses = ["key_prefix = ?", "hour >= ?", "hour <= ?"]
    values: list[Any] = [key_prefix, start_hour, end_hour]
    if event_type is not None:
        clauses.append("event_type = ?")
        values.append(event_type)
    if tu_id is not None:
        clauses.append("tu_id = ?")
        values.append(tu_id)
    return " AND ".join(clauses), values


def count_events(
    connection: Any,
    key_prefix: str,
    *,
    start_hour: int,
    end_hour: int,
    event_type: str | None = None,
    tu_id: str | None = None,
) -> int:
    """Return the tenant's event count over the hours `start_hour..end_hour` (Unix seconds, inclusive)."""
    where, values = _where(key_prefix, start_hour, end_hour, event_type, tu_id)
    (total,) = connection.execute(
        f"SELECT coalesce(sum(count), 0) FROM stats_counts WHERE {where}", values
    ).fetchone()
    return int(total)


def count_rows(
    connection: Any,
    key_prefix: str,
    *,
    start_hour: int,
    end_hour: int,
    group_by: Sequence[str] = ("hour",),
    event_type: str | None = None,
    tu_id: str | None = None,
) -> list[StatsRow]:
    """Return event counts grouped by any of event_type, hour and tu_id, in group order."""
    if not group_by:
        raise RegistryError("group_by: name at least one of event_type, hour, tu_id")
    for column in group_by:
        if column not in GROUP_COLUMNS:
            raise RegistryError(
                f"group_by: unknown column {column[:50]!r}; expected event_type, hour or tu_id"
            )
    columns = ", ".join(dict.fromkeys(group_by))
    where, values = _where(key_prefix, start_hour, end_hour, event_type, tu_id)
    rows = connection.execute(
        f"SELECT {columns}, sum(count) FROM stats_counts WHERE {where} GROUP BY {columns} ORDER BY {columns}",
        values,
    ).fetchall()
    names = list(dict.fromkeys(group_by))
    return [StatsRow(dict(zip(names, row[:-1], strict=True)), int(row[-1])) for row in rows]
