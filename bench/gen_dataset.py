"""Generate a query benchmark dataset into the cold, warm and hot tiers.

Events span 30 days before END_MS across ten tenants. Tenant `big` has about half
of them. Base events are 45% clicks, 35% impressions and 20% pageviews, and a
share of the clicks (`--postback-ratio`, default one half) get one postback with
the same `click_id`, a few seconds to two days later. Every event carries `sub1`
(50 values), `campaign_id` (200 values) and `country` (30 values), drawn with a
skew.

- cold: a Delta table in the archiver's layout (tracker.consumers.archive_table),
  written in appends of `--cold-chunk` events;
- warm: rollups written by the real warm aggregator, in batches of `--warm-batch`
  events in timestamp order;
- hot: the hot writer's table (tracker.hot.schema) in a PostgreSQL schema, holding
  the last `--hot-days` days as the hot tier's retention would, loaded with COPY
  before its indexes are built (optional).

Generation is vectorised with NumPy, Arrow and Polars; only the warm aggregator,
which takes decoded events, receives one Python dict per event.

Run: `python bench/gen_dataset.py --events 1000000 --out bench/.data/1m [--pg-schema bench_1m]`
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import time
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.compute as pc

END_MS = 1_796_083_200_000  # 2026-12-01T00:00:00Z
DAY_MS = 86_400_000
SPAN_MS = 30 * DAY_MS
TENANTS = ["big", *[f"t{i}" for i in range(9)]]
EVENT_TYPES = ["click", "impression", "pageview", "postback"]
# Params in the order each event's map stores them; `click_id` only on clicks and postbacks.
PARAM_KEYS = ["key_prefix", "sub1", "campaign_id", "country", "click_id"]
FIXED_FIELDS = {
    "ip": "203.0.113.0",
    "user_agent": "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0 Safari/537.36",
    "referer": "https://news.example.com/article",
    "accept_language": "en-US,en;q=0.9",
    "request_path": "/t",
    "request_host": "track.example.com",
}
HEX_DIGITS = np.frombuffer(b"0123456789abcdef", dtype=np.uint8)


def uuid7_strings(timestamps: np.ndarray, rng: np.random.Generator) -> pa.StringArray:
    """Return one UUIDv7 string per Unix-millisecond timestamp (RFC 9562 layout)."""
    count = len(timestamps)
    # High 64 bits: 48-bit timestamp, version 7, 12 random bits. Low 64 bits: variant 0b10, 62 random bits.
    high = (
        (timestamps.astype(np.uint64) << np.uint64(16))
        | np.uint64(0x7000)
        | rng.integers(0, 1 << 12, size=count, dtype=np.uint64)
    )
    low = np.uint64(1 << 63) | rng.integers(0, 1 << 62, size=count, dtype=np.uint64)
    raw = np.empty((count, 16), dtype=np.uint8)
    raw[:, :8] = high.astype(">u8").view(np.uint8).reshape(count, 8)
    raw[:, 8:] = low.astype(">u8").view(np.uint8).reshape(count, 8)

    digits = np.empty((count, 32), dtype=np.uint8)
    digits[:, 0::2] = HEX_DIGITS[raw >> 4]
    digits[:, 1::2] = HEX_DIGITS[raw & 0x0F]
    text = np.full((count, 36), ord("-"), dtype=np.uint8)
    for source, target in ((0, 0), (8, 9), (12, 14), (16, 19), (20, 24)):
        width = {0: 8, 20: 12}.get(source, 4)
        text[:, target : target + width] = digits[:, source : source + width]

    offsets = np.arange(0, 36 * (count + 1), 36, dtype=np.int32)
    return pa.StringArray.from_buffers(count, pa.py_buffer(offsets), pa.py_buffer(text))


def generate(total: int, seed: int = 1, postback_ratio: float = 0.5) -> pl.DataFrame:
    """Return about `total` events sorted by tenant and timestamp, with params as separate columns."""
    rng = np.random.default_rng(seed)
    base = int(total / (1 + 0.45 * postback_ratio))
    tenant_weights = np.array([9.0] + [1.0] * 9)
    tenant = rng.choice(len(TENANTS), size=base, p=tenant_weights / tenant_weights.sum())
    timestamp = END_MS - SPAN_MS + rng.integers(0, SPAN_MS, size=base)
    kind = rng.choice(3, size=base, p=[0.45, 0.35, 0.20])
    # Zipf-like skew: low codes are far more common than high ones.
    sub1 = np.minimum(rng.zipf(1.6, size=base) - 1, 49)
    campaign = np.minimum(rng.zipf(1.3, size=base) - 1, 199)
    country = rng.integers(0, 30, size=base)
    serial = np.arange(base, dtype=np.int64)

    # Postbacks copy their click's tenant, params and click_id, delayed by 2 s plus an
    # exponential with a one-hour mean, capped at two days.
    clicks = np.flatnonzero(kind == 0)
    converted = np.sort(rng.choice(clicks, size=int(len(clicks) * postback_ratio), replace=False))
    delays = np.minimum(
        rng.exponential(3_600_000, size=len(converted)).astype(np.int64) + 2000, 2 * DAY_MS
    )
    frame = pl.DataFrame(
        {
            "tenant": np.concatenate([tenant, tenant[converted]]).astype(np.int32),
            "timestamp": np.concatenate([timestamp, timestamp[converted] + delays]),
            "kind": np.concatenate([kind, np.full(len(converted), 3)]).astype(np.int32),
            "sub1": np.concatenate([sub1, sub1[converted]]).astype(np.int32),
            "campaign": np.concatenate([campaign, campaign[converted]]).astype(np.int32),
            "country": np.concatenate([country, country[converted]]).astype(np.int32),
            "click": np.concatenate([serial, serial[converted]]),
        }
    )
    frame = frame.filter(pl.col("timestamp") < END_MS).sort("tenant", "timestamp")

    event_id = pl.from_arrow(uuid7_strings(frame["timestamp"].to_numpy(), rng))
    return frame.select(
        pl.Series("event_id", event_id),
        pl.col("kind")
        .replace_strict(dict(enumerate(EVENT_TYPES)), return_dtype=pl.String)
        .alias("event_type"),
        "timestamp",
        pl.col("tenant")
        .replace_strict(dict(enumerate(TENANTS)), return_dtype=pl.String)
        .alias("key_prefix"),
        ("src-" + pl.col("sub1").cast(pl.String)).alias("sub1"),
        ("camp_" + pl.col("campaign").cast(pl.String)).alias("campaign_id"),
        ("C" + pl.col("country").cast(pl.String)).alias("country"),
        pl.when(pl.col("kind").is_in([0, 3]))
        .then("k" + pl.col("click").cast(pl.String))
        .otherwise(None)
        .alias("click_id"),
    )


def params_map(events: pl.DataFrame) -> pa.MapArray:
    """Return the params of each event as an Arrow map, keys in PARAM_KEYS order, nulls left out."""
    count = events.height
    has_click = events["click_id"].is_not_null().to_numpy()
    lengths = 4 + has_click.astype(np.int32)
    offsets = np.zeros(count + 1, dtype=np.int32)
    np.cumsum(lengths, out=offsets[1:])

    # Entry e of row r is key number e - offsets[r]. Its value is at index
    # key * count + r of the params columns placed end to end.
    rows = np.repeat(np.arange(count, dtype=np.int64), lengths)
    positions = np.arange(offsets[-1], dtype=np.int64) - offsets[:-1].astype(np.int64)[rows]
    stacked = pa.concat_arrays([events[key].to_arrow().cast(pa.string()) for key in PARAM_KEYS])
    values = stacked.take(pa.array(positions * count + rows))
    keys = pa.array(PARAM_KEYS, pa.string()).take(pa.array(positions))
    return pa.MapArray.from_arrays(pa.array(offsets), keys, values)


def constant_column(value: str, count: int) -> pa.StringArray:
    """Return `value` repeated `count` times, built from buffers in one copy."""
    data = value.encode()
    offsets = np.arange(0, len(data) * (count + 1), len(data), dtype=np.int64)
    return pa.LargeStringArray.from_buffers(
        count, pa.py_buffer(offsets), pa.py_buffer(data * count)
    ).cast(pa.string())


def to_archive_table(events: pl.DataFrame) -> pa.Table:
    """Return the events in the archiver's Arrow schema, params as a map."""
    from tracker.consumers.archive_table import ARCHIVE_SCHEMA

    timestamps = events["timestamp"].to_arrow()
    # Whole days since the epoch print as the UTC date YYYY-MM-DD once cast to date32.
    dates = pc.divide(timestamps, DAY_MS).cast(pa.int32()).cast(pa.date32()).cast(pa.string())
    columns = {
        "event_id": events["event_id"].to_arrow().cast(pa.string()),
        "event_type": events["event_type"].to_arrow().cast(pa.string()),
        "timestamp": timestamps,
        **{name: constant_column(value, events.height) for name, value in FIXED_FIELDS.items()},
        "params": params_map(events),
        "key_prefix": events["key_prefix"].to_arrow().cast(pa.string()),
        "date": dates,
    }
    return pa.table({name: columns[name] for name in ARCHIVE_SCHEMA.names}).cast(ARCHIVE_SCHEMA)


def params_json(events: pl.DataFrame) -> pl.Series:
    """Return each event's params as a JSON object, without the null `click_id`."""
    return events.select(
        pl.struct(PARAM_KEYS).struct.json_encode().str.replace(',"click_id":null', "", literal=True)
    ).to_series()


def write_cold(events: pl.DataFrame, uri: str, chunk: int) -> None:
    """Append the events to the Delta table; rows sorted by tenant and time keep files per partition few."""
    from deltalake import write_deltalake

    for start in range(0, events.height, chunk):
        table = to_archive_table(events.slice(start, chunk))
        write_deltalake(uri, table, partition_by=["key_prefix", "date"], mode="append")


def warm_documents(events: pl.DataFrame) -> list[dict]:
    """Return decoded events as the warm aggregator receives them, without null params."""
    documents: list[dict] = []
    for keys in (PARAM_KEYS, PARAM_KEYS[:-1]):
        has_click = pl.col("click_id").is_not_null()
        part = events.filter(has_click if "click_id" in keys else ~has_click)
        documents.extend(
            part.select(
                "event_id", "event_type", "timestamp", pl.struct(keys).alias("params")
            ).to_dicts()
        )
    return documents


async def write_warm(events: pl.DataFrame, warm_dir: Path, batch_size: int) -> None:
    from tracker.consumers.runtime import Batch
    from tracker.consumers.warm_aggregator import WarmAggregator, WarmAggregatorSettings

    # Compacting every few batches keeps the aggregator's id ledger to its 48 hours.
    aggregator = WarmAggregator(
        WarmAggregatorSettings(
            warm_dir, retention_days=3650, dedup_hours=48, compact_every_batches=8
        )
    )
    await aggregator.open()
    in_time_order = events.select(
        "event_id", "event_type", "timestamp", *PARAM_KEYS[:-1], "click_id"
    ).sort("timestamp")
    try:
        for offset, start in enumerate(range(0, in_time_order.height, batch_size)):
            documents = warm_documents(in_time_order.slice(start, batch_size))
            await aggregator.process(Batch(0, offset, offset, documents, []))
        aggregator.compact()
    finally:
        await aggregator.close()


async def write_hot(events: pl.DataFrame, dsn: str, schema: str, days: int, work_dir: Path) -> int:
    """Load the last `days` days into the hot writer's table; return the number of rows."""
    import asyncpg

    from tracker.hot.schema import COLUMNS, Dialect

    first_day = END_MS - days * DAY_MS
    recent = events.filter(pl.col("timestamp") >= first_day).sort("timestamp")
    frame = recent.select(
        "event_id",
        "event_type",
        "timestamp",
        "key_prefix",
        *[pl.lit(value).alias(name) for name, value in FIXED_FIELDS.items()],
        params_json(recent).alias("params"),
    ).select(list(COLUMNS))
    csv_path = work_dir / "hot.csv"
    frame.write_csv(csv_path, include_header=False)

    dialect = Dialect("postgres", schema)
    table, *indexes = dialect.create_statements()
    connection = await asyncpg.connect(dsn)
    try:
        await connection.execute(
            f'DROP SCHEMA IF EXISTS "{schema}" CASCADE; CREATE SCHEMA "{schema}"'
        )
        await connection.execute(table)
        for day in range(first_day, END_MS, DAY_MS):
            await connection.execute(dialect.create_partition(day))
        # Building the indexes after the load is much faster than maintaining them row by row.
        await connection.copy_to_table(
            "events", schema_name=schema, source=csv_path, format="csv", columns=list(COLUMNS)
        )
        await connection.execute("SET maintenance_work_mem = '512MB'")
        for statement in indexes:
            await connection.execute(statement)
        await connection.execute(f'VACUUM ANALYZE "{schema}".events')
    finally:
        await connection.close()
        csv_path.unlink(missing_ok=True)
    return frame.height


def report(step: str, wall_started: float, cpu_started: float) -> None:
    wall = time.perf_counter() - wall_started
    cpu = time.process_time() - cpu_started
    print(f"{step} in {wall:.1f} s wall, {cpu:.1f} s CPU", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--events", type=int, default=1_000_000, help="approximate number of events"
    )
    parser.add_argument(
        "--postback-ratio",
        type=float,
        default=0.5,
        help="share of clicks that get a postback, from 0 to 1",
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=Path("bench/.data/1m"),
        help="directory for the Delta table and warm store",
    )
    parser.add_argument(
        "--cold-chunk", type=int, default=2_000_000, help="events per Delta table append"
    )
    parser.add_argument(
        "--warm-batch", type=int, default=250_000, help="events per warm aggregator batch"
    )
    parser.add_argument(
        "--pg-dsn",
        default="postgresql://postgres@127.0.0.1:5432/test",
        help="PostgreSQL for the hot tier",
    )
    parser.add_argument(
        "--pg-schema", default=None, help="schema for the hot table; without it hot is skipped"
    )
    parser.add_argument(
        "--hot-days", type=int, default=7, help="days before the dataset's end loaded into hot"
    )
    parser.add_argument("--tiers", default="cold,warm,hot", help="comma-separated tiers to write")
    arguments = parser.parse_args()
    if not 0 <= arguments.postback_ratio <= 1:
        parser.error("--postback-ratio must be between 0 and 1")
    tiers = set(arguments.tiers.split(","))

    wall, cpu = time.perf_counter(), time.process_time()
    events = generate(arguments.events, postback_ratio=arguments.postback_ratio)
    report(f"generated {events.height} events", wall, cpu)
    arguments.out.mkdir(parents=True, exist_ok=True)

    if "cold" in tiers:
        wall, cpu = time.perf_counter(), time.process_time()
        write_cold(events, str(arguments.out / "delta" / "events"), arguments.cold_chunk)
        report("cold written", wall, cpu)
    if "warm" in tiers:
        wall, cpu = time.perf_counter(), time.process_time()
        asyncio.run(write_warm(events, arguments.out / "warm", arguments.warm_batch))
        report("warm written", wall, cpu)
    hot_rows = 0
    if "hot" in tiers and arguments.pg_schema:
        wall, cpu = time.perf_counter(), time.process_time()
        hot_rows = asyncio.run(
            write_hot(
                events, arguments.pg_dsn, arguments.pg_schema, arguments.hot_days, arguments.out
            )
        )
        report(f"hot written ({hot_rows} rows)", wall, cpu)
    (arguments.out / "dataset.txt").write_text(
        f"events={events.height} end_ms={END_MS} postback_ratio={arguments.postback_ratio}"
        f" hot_rows={hot_rows}"
        f" generated={datetime.datetime.now(datetime.UTC).isoformat()}\n"
    )


if __name__ == "__main__":
    main()
