"""The cold tier's Delta table: Arrow schema, event conversion, exactly-once appends.

Events become Arrow rows in two ways with the same result: `documents_to_table`
parses the stored JSON documents in the extension (`tracker._core.archive_rows`),
which the archiver uses, and `events_to_table` converts already decoded dicts.

The layout is documented in `tracker.consumers.archiver`. Each append carries one
Delta application transaction (`txn` action) per broker partition it covers,
with `appId = "<sink name>-p<partition>"` and `version` = the last broker offset
written, so the table itself records how far each partition is archived and a
restart resumes exactly after it.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as pa_dataset
from deltalake import CommitProperties, DeltaTable, Transaction, write_deltalake
from deltalake.exceptions import TableNotFoundError

from tracker._core import archive_rows

__all__ = [
    "ARCHIVE_SCHEMA",
    "PARTITION_COLUMNS",
    "STRING_FIELDS",
    "ArchiveTable",
    "ConvertedEvents",
    "app_id_for",
    "documents_to_table",
    "events_to_table",
]

logger = logging.getLogger(__name__)

# Top-level string fields of an event, in wire order after event_id and event_type.
STRING_FIELDS = ("ip", "user_agent", "referer", "accept_language", "request_path", "request_host")
PARTITION_COLUMNS = ["key_prefix", "date"]

ARCHIVE_SCHEMA = pa.schema(
    [
        pa.field("event_id", pa.string(), nullable=False),
        pa.field("event_type", pa.string(), nullable=False),
        pa.field("timestamp", pa.int64(), nullable=False),
        *(pa.field(name, pa.string(), nullable=False) for name in STRING_FIELDS),
        pa.field("params", pa.map_(pa.string(), pa.string()), nullable=False),
        pa.field("key_prefix", pa.string(), nullable=False),
        pa.field("date", pa.string(), nullable=False),
    ]
)

# Events outside these bounds cannot be placed in a UTC day partition sensibly.
MIN_TIMESTAMP_MS = 0
MAX_TIMESTAMP_MS = 253402300799999  # 9999-12-31T23:59:59.999Z


def app_id_for(sink_name: str, partition: int) -> str:
    """Return the Delta transaction app id that records `partition`'s archived offset."""
    return f"{sink_name}-p{partition}"


@dataclass(slots=True)
class ConvertedEvents:
    """Arrow rows for the valid events and the reason for each rejected one."""

    table: pa.Table
    kept: list[int]
    rejected: list[tuple[int, str]]


def _invalid(event: Any) -> str | None:
    if not isinstance(event, dict):
        return "event is not a JSON object"
    if not isinstance(event.get("event_id"), str) or not event["event_id"]:
        return "event_id is missing or not a string"
    if not isinstance(event.get("event_type"), str) or not event["event_type"]:
        return "event_type is missing or not a string"
    timestamp = event.get("timestamp")
    if type(timestamp) is not int or not MIN_TIMESTAMP_MS <= timestamp <= MAX_TIMESTAMP_MS:
        return "timestamp is missing or not Unix milliseconds"
    params = event.get("params")
    if not isinstance(params, dict):
        return "params is missing or not an object"
    key_prefix = params.get("key_prefix")
    if not isinstance(key_prefix, str) or not key_prefix:
        return "params.key_prefix is missing or not a string"
    for value in params.values():
        if not isinstance(value, str):
            return "params values must be strings"
    for name in STRING_FIELDS:
        value = event.get(name, "")
        if not isinstance(value, str):
            return f"{name} is not a string"
    return None


def documents_to_table(documents: Sequence[bytes]) -> ConvertedEvents:
    """Convert event JSON documents to Arrow rows of ARCHIVE_SCHEMA, rejecting malformed ones.

    Rows and reasons are those `events_to_table` gives for the decoded documents,
    and a document that is not a JSON object is rejected as "event is not a JSON
    object". The extension parses without the GIL and pyarrow imports its columns
    without a copy.
    """
    rows = archive_rows(documents)
    # from_batches checks the schema, so a drift between the extension and
    # ARCHIVE_SCHEMA fails here instead of in a Delta append.
    table = pa.Table.from_batches([pa.record_batch(rows)], schema=ARCHIVE_SCHEMA)
    rejected = rows.rejected
    if not rejected:
        return ConvertedEvents(table, list(range(len(documents))), [])
    dropped = {index for index, _ in rejected}
    kept = [index for index in range(len(documents)) if index not in dropped]
    return ConvertedEvents(table, kept, rejected)


def events_to_table(events: Sequence[Mapping[str, Any]]) -> ConvertedEvents:
    """Convert decoded events to Arrow rows of ARCHIVE_SCHEMA, rejecting malformed ones."""
    table = _convert_all_valid(events)
    if table is not None:
        return ConvertedEvents(table, list(range(len(events))), [])
    return _convert_checking_each(events)


def _convert_all_valid(events: Sequence[Mapping[str, Any]]) -> pa.Table | None:
    """Convert column by column, or return None if any event is malformed.

    Column-wise list comprehensions and Arrow's own type checks are faster than
    checking each event in Python. When this fails, `_convert_checking_each`
    finds the bad events.
    """
    try:
        params = [event["params"] for event in events]
        map_keys = pa.array([key for bag in params for key in bag], pa.string())
        map_values = pa.array([value for bag in params for value in bag.values()], pa.string())
        offsets = pa.array([0, *itertools.accumulate(len(bag) for bag in params)], pa.int32())
        key_prefixes = pa.array([bag["key_prefix"] for bag in params], pa.string())
        event_ids = pa.array([event["event_id"] for event in events], pa.string())
        event_types = pa.array([event["event_type"] for event in events], pa.string())
        timestamps = pa.array([event["timestamp"] for event in events], pa.int64())
        strings = [
            pa.array([event.get(name, "") for event in events], pa.string())
            for name in STRING_FIELDS
        ]
    except (KeyError, TypeError, AttributeError, pa.ArrowInvalid, pa.ArrowTypeError, OverflowError):
        return None
    if any(
        type(event["timestamp"]) is not int for event in events
    ):  # bool passes Arrow's int64 check
        return None
    for column in (event_ids, event_types, key_prefixes, *strings, map_keys, map_values):
        if column.null_count:
            return None
    for column in (event_ids, event_types, key_prefixes):
        if len(column) and pc.min(pc.utf8_length(column)).as_py() == 0:
            return None
    if len(timestamps) and (
        pc.min(timestamps).as_py() < MIN_TIMESTAMP_MS
        or pc.max(timestamps).as_py() > MAX_TIMESTAMP_MS
    ):
        return None
    return _assemble(
        event_ids, event_types, timestamps, strings, offsets, map_keys, map_values, key_prefixes
    )


def _assemble(
    event_ids: pa.Array,
    event_types: pa.Array,
    timestamps: pa.Array,
    strings: list[pa.Array],
    offsets: pa.Array,
    map_keys: pa.Array,
    map_values: pa.Array,
    key_prefixes: pa.Array,
) -> pa.Table:
    # Whole days since the epoch cast to date32 print as YYYY-MM-DD, many times faster
    # than strftime; timestamps are never negative, so integer division floors.
    dates = pc.divide(timestamps, 86_400_000).cast(pa.int32()).cast(pa.date32())
    params = pa.MapArray.from_arrays(offsets, map_keys, map_values)
    columns = [
        event_ids,
        event_types,
        timestamps,
        *strings,
        params.cast(ARCHIVE_SCHEMA.field("params").type),
        key_prefixes,
        dates.cast(pa.string()),
    ]
    return pa.Table.from_arrays(columns, schema=ARCHIVE_SCHEMA)


def _convert_checking_each(events: Sequence[Mapping[str, Any]]) -> ConvertedEvents:
    kept: list[int] = []
    rejected: list[tuple[int, str]] = []
    event_ids: list[str] = []
    event_types: list[str] = []
    timestamps: list[int] = []
    strings: dict[str, list[str]] = {name: [] for name in STRING_FIELDS}
    key_prefixes: list[str] = []
    map_offsets: list[int] = [0]
    map_keys: list[str] = []
    map_values: list[str] = []

    for index, event in enumerate(events):
        reason = _invalid(event)
        if reason is not None:
            rejected.append((index, reason))
            continue
        kept.append(index)
        event_ids.append(event["event_id"])
        event_types.append(event["event_type"])
        timestamps.append(event["timestamp"])
        for name, column in strings.items():
            column.append(event.get(name, ""))
        params = event["params"]
        key_prefixes.append(params["key_prefix"])
        map_keys.extend(params.keys())
        map_values.extend(params.values())
        map_offsets.append(len(map_keys))

    table = _assemble(
        pa.array(event_ids, pa.string()),
        pa.array(event_types, pa.string()),
        pa.array(timestamps, pa.int64()),
        [pa.array(strings[name], pa.string()) for name in STRING_FIELDS],
        pa.array(map_offsets, pa.int32()),
        pa.array(map_keys, pa.string()),
        pa.array(map_values, pa.string()),
        pa.array(key_prefixes, pa.string()),
    )
    return ConvertedEvents(table, kept, rejected)


class ArchiveTable:
    """One Delta table of archived events at a local path or an s3:// URL."""

    def __init__(self, uri: str, *, storage_options: Mapping[str, str] | None = None) -> None:
        self.uri = uri
        self.storage_options = dict(storage_options or {})
        self._table: DeltaTable | None = None

    def open(self) -> DeltaTable:
        """Load the table, creating it empty with ARCHIVE_SCHEMA if it does not exist."""
        if self._table is None:
            try:
                self._table = DeltaTable(self.uri, storage_options=self.storage_options or None)
            except TableNotFoundError:
                # mode="ignore": when two archivers race to create it, the loser loads the winner's table.
                self._table = DeltaTable.create(
                    self.uri,
                    ARCHIVE_SCHEMA,
                    mode="ignore",
                    partition_by=PARTITION_COLUMNS,
                    name="events",
                    storage_options=self.storage_options or None,
                )
                logger.info("Created archive table.", extra={"table_uri": _redacted(self.uri)})
        return self._table

    def refresh(self) -> DeltaTable:
        """Load the newest version, including commits made by other processes."""
        table = self.open()
        table.update_incremental()
        return table

    def stored_offsets(self, sink_name: str, partitions: int) -> dict[int, int]:
        """Return the last archived broker offset per partition, from the table's txn actions."""
        table = self.refresh()
        offsets: dict[int, int] = {}
        for partition in range(partitions):
            version = table.transaction_version(app_id_for(sink_name, partition))
            if version is not None:
                offsets[partition] = int(version)
        return offsets

    def append(self, rows: pa.Table, sink_name: str, offsets: Mapping[int, int]) -> None:
        """Append `rows` and record `offsets` (partition -> last offset) in the same commit."""
        transactions = [
            Transaction(app_id=app_id_for(sink_name, partition), version=offset)
            for partition, offset in sorted(offsets.items())
        ]
        write_deltalake(
            self.open(),
            rows,
            mode="append",
            partition_by=PARTITION_COLUMNS,
            commit_properties=CommitProperties(app_transactions=transactions),
        )

    def recent_event_ids(self, since_ms: int) -> pa.ChunkedArray:
        """Return the event ids in data files added at or after `since_ms` (Unix ms).

        Files are picked by their add time, not by event time, so late events that
        were archived recently count too. Only the `event_id` column is read.
        """
        table = self.refresh()
        actions = pa.table(table.get_add_actions(flatten=True))
        if actions.num_rows == 0:
            return pa.chunked_array([], pa.string())
        recent = actions.filter(pc.greater_equal(actions.column("modification_time"), since_ms))
        wanted = set(recent.column("path").to_pylist())
        if not wanted:
            return pa.chunked_array([], pa.string())
        full = table.to_pyarrow_dataset()
        paths = [path for path in full.files if path in wanted]
        subset = pa_dataset.dataset(
            paths, schema=full.schema, format="parquet", filesystem=full.filesystem
        )
        return subset.to_table(columns=["event_id"]).column("event_id")


def _redacted(uri: str) -> str:
    # A URI never carries credentials here, but a user-supplied one might; keep only scheme and path.
    if "@" in uri:
        scheme, _, rest = uri.partition("://")
        return f"{scheme}://{rest.rpartition('@')[2]}"
    return uri
