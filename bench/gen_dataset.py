"""Generate a query benchmark dataset into the cold, warm and hot tiers.

Events span 30 days before END_MS across ten tenants. Tenant `big` has about half
of them. Base events are 45% clicks, 35% impressions and 20% pageviews, and half
of the clicks get one postback with the same `click_id`, a few seconds to two days
later. Every event carries `sub1` (50 values), `campaign_id` (200 values) and
`country` (30 values), drawn with a skew.

- cold: a Delta table in the archiver's layout (tracker.consumers.archive_table)
- warm: rollups written by the real warm aggregator, in batches of 50,000 events
- hot: the hot table in a PostgreSQL schema, loaded with COPY (optional)

Run: `python bench/gen_dataset.py --events 1000000 --out bench/.data/1m [--pg-schema bench_1m]`
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import time
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pyarrow as pa

END_MS = 1_796_083_200_000  # 2026-12-01T00:00:00Z
SPAN_MS = 30 * 86_400_000
TENANTS = ["big", *[f"t{i}" for i in range(9)]]
FIXED_FIELDS = {
    "ip": "203.0.113.0",
    "user_agent": "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0 Safari/537.36",
    "referer": "https://news.example.com/article",
    "accept_language": "en-US,en;q=0.9",
    "request_path": "/t",
    "request_host": "track.example.com",
}


def generate(total: int, seed: int = 1) -> pl.DataFrame:
    """Return the events as a frame sorted by tenant and timestamp, with params as separate columns."""
    rng = np.random.default_rng(seed)
    base = int(total / 1.225)
    tenant_weights = np.array([9.0] + [1.0] * 9)
    tenant = rng.choice(len(TENANTS), size=base, p=tenant_weights / tenant_weights.sum())
    timestamp = END_MS - SPAN_MS + rng.integers(0, SPAN_MS, size=base)
    kind = rng.choice(3, size=base, p=[0.45, 0.35, 0.20])
    # Zipf-like skew: low codes are far more common than high ones.
    sub1 = np.minimum(rng.zipf(1.6, size=base) - 1, 49)
    campaign = np.minimum(rng.zipf(1.3, size=base) - 1, 199)
    country = rng.integers(0, 30, size=base)
    frame = pl.DataFrame(
        {
            "tenant": tenant.astype(np.int32),
            "timestamp": timestamp.astype(np.int64),
            "event_type": np.array(["click", "impression", "pageview"])[kind],
            "sub1": sub1.astype(np.int32),
            "campaign": campaign.astype(np.int32),
            "country": country.astype(np.int32),
            "serial": np.arange(base, dtype=np.int64),
        }
    )
    clicks = frame.filter(pl.col("event_type") == "click")
    converted = clicks.sample(fraction=0.5, seed=seed)
    delays = np.minimum(
        rng.exponential(3_600_000, size=converted.height).astype(np.int64) + 2000, 2 * 86_400_000
    )
    postbacks = converted.with_columns(
        pl.lit("postback").alias("event_type"),
        (pl.col("timestamp") + pl.Series(delays)).alias("timestamp"),
    )
    events = pl.concat([frame, postbacks.with_columns(pl.col("serial") + base * 10)])
    events = events.filter(pl.col("timestamp") < END_MS)
    names = pl.Series(TENANTS)
    events = events.with_columns(
        names.gather(events["tenant"]).alias("key_prefix"),
        ("src-" + pl.col("sub1").cast(pl.String)).alias("sub1"),
        ("camp_" + pl.col("campaign").cast(pl.String)).alias("campaign_id"),
        ("C" + pl.col("country").cast(pl.String)).alias("country"),
        pl.when(pl.col("event_type").is_in(["click", "postback"]))
        .then("k" + (pl.col("serial") % (base * 10)).cast(pl.String))
        .otherwise(None)
        .alias("click_id"),
    )
    # UUIDv7 layout: 48-bit millisecond timestamp, version 7, then random bits.
    random_bits = rng.integers(0, 2**62, size=events.height, dtype=np.int64)
    events = events.with_columns(pl.Series("random", random_bits)).with_columns(
        (
            pl.col("timestamp").map_batches(
                lambda s: pl.Series([f"{v:012x}" for v in s]), return_dtype=pl.String
            )
            + pl.col("random").map_batches(
                lambda s: pl.Series(
                    [
                        f"7{v & 0xFFF:03x}{0x8000 | (v >> 12) & 0x3FFF:04x}{(v >> 26) & 0xFFFFFFFFF:012x}"
                        for v in s
                    ]
                ),
                return_dtype=pl.String,
            )
        ).alias("hex")
    )
    events = events.with_columns(
        (
            pl.col("hex").str.slice(0, 8)
            + "-"
            + pl.col("hex").str.slice(8, 4)
            + "-"
            + pl.col("hex").str.slice(12, 4)
            + "-"
            + pl.col("hex").str.slice(16, 4)
            + "-"
            + pl.col("hex").str.slice(20, 12)
        ).alias("event_id")
    )
    return events.select(
        "event_id",
        "event_type",
        "timestamp",
        "key_prefix",
        "sub1",
        "campaign_id",
        "country",
        "click_id",
    ).sort("key_prefix", "timestamp")


def to_archive_table(events: pl.DataFrame) -> pa.Table:
    """Return the events in the archiver's Arrow schema, params as a map."""
    from tracker.consumers.archive_table import ARCHIVE_SCHEMA

    keys = ["key_prefix", "sub1", "campaign_id", "country", "click_id"]
    params = events.select(
        pl.concat_list(
            [pl.struct(pl.lit(key).alias("key"), pl.col(key).alias("value")) for key in keys]
        )
        .list.eval(pl.element().filter(pl.element().struct.field("value").is_not_null()))
        .alias("params")
    )["params"].to_arrow()
    params = params.cast(pa.list_(pa.struct([("key", pa.string()), ("value", pa.string())])))
    params = pa.MapArray.from_arrays(
        params.offsets,
        params.values.field("key"),
        params.values.field("value"),
        type=pa.map_(pa.string(), pa.string()),
    )
    date = events.select(
        pl.from_epoch("timestamp", time_unit="ms").dt.strftime("%Y-%m-%d").alias("date")
    )["date"].to_arrow()
    columns: dict[str, Any] = {
        "event_id": events["event_id"].to_arrow(),
        "event_type": events["event_type"].to_arrow(),
        "timestamp": events["timestamp"].to_arrow(),
        **{
            name: pa.array([value] * events.height, pa.string())
            for name, value in FIXED_FIELDS.items()
        },
        "params": params,
        "key_prefix": events["key_prefix"].to_arrow(),
        "date": date,
    }
    return pa.table({name: columns[name] for name in ARCHIVE_SCHEMA.names}).cast(ARCHIVE_SCHEMA)


def params_json(events: pl.DataFrame) -> pl.Series:
    keys = ["key_prefix", "sub1", "campaign_id", "country", "click_id"]
    return events.select(
        pl.struct([pl.col(key) for key in keys])
        .struct.json_encode()
        .str.replace(',"click_id":null', "", literal=True)
    ).to_series()


def write_cold(events: pl.DataFrame, uri: str) -> None:
    from deltalake import write_deltalake

    chunk = 2_000_000
    for start in range(0, events.height, chunk):
        table = to_archive_table(events.slice(start, chunk))
        write_deltalake(uri, table, partition_by=["key_prefix", "date"], mode="append")


async def write_warm(events: pl.DataFrame, warm_dir: Path) -> None:
    from tracker.consumers.runtime import Batch
    from tracker.consumers.warm_aggregator import WarmAggregator, WarmAggregatorSettings

    aggregator = WarmAggregator(
        WarmAggregatorSettings(
            warm_dir, retention_days=3650, dedup_hours=48, compact_every_batches=64
        )
    )
    await aggregator.open()
    shuffled = events.sort("timestamp")
    batch_size = 50_000
    for offset, start in enumerate(range(0, shuffled.height, batch_size)):
        chunk = shuffled.slice(start, batch_size)
        documents = []
        for row in chunk.iter_rows(named=True):
            params = {
                key: row[key]
                for key in ("key_prefix", "sub1", "campaign_id", "country")
                if row[key] is not None
            }
            if row["click_id"] is not None:
                params["click_id"] = row["click_id"]
            documents.append(
                {
                    "event_id": row["event_id"],
                    "event_type": row["event_type"],
                    "timestamp": row["timestamp"],
                    **FIXED_FIELDS,
                    "params": params,
                }
            )
        await aggregator.process(Batch(0, offset, offset, documents, []))
    aggregator.compact()
    await aggregator.close()


async def write_hot(events: pl.DataFrame, dsn: str, schema: str, work_dir: Path) -> None:
    import asyncpg

    from tests.query.dataset import HOT_TABLE

    csv_path = work_dir / "hot.csv"
    frame = events.select(
        "event_id",
        "event_type",
        "timestamp",
        *[pl.lit(value).alias(name) for name, value in FIXED_FIELDS.items()],
        params_json(events).alias("params"),
    )
    frame.write_csv(csv_path, include_header=False)
    connection = await asyncpg.connect(dsn)
    try:
        await connection.execute(
            f'DROP SCHEMA IF EXISTS "{schema}" CASCADE; CREATE SCHEMA "{schema}"'
        )
        ddl = HOT_TABLE.format(schema=schema).split(";")
        await connection.execute(ddl[0])
        await connection.copy_to_table("events", schema_name=schema, source=csv_path, format="csv")
        for statement in ddl[1:]:
            if statement.strip():
                await connection.execute(statement)
        await connection.execute(f'ANALYZE "{schema}".events')
    finally:
        await connection.close()
        csv_path.unlink(missing_ok=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--events", type=int, default=1_000_000, help="approximate number of events"
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=Path("bench/.data/1m"),
        help="directory for the Delta table and warm store",
    )
    parser.add_argument(
        "--pg-dsn",
        default="postgresql://postgres@127.0.0.1:5432/test",
        help="PostgreSQL for the hot tier",
    )
    parser.add_argument(
        "--pg-schema", default=None, help="schema for the hot table; without it hot is skipped"
    )
    arguments = parser.parse_args()

    started = time.perf_counter()
    events = generate(arguments.events)
    print(f"generated {events.height} events in {time.perf_counter() - started:.1f} s", flush=True)
    arguments.out.mkdir(parents=True, exist_ok=True)

    step = time.perf_counter()
    write_cold(events, str(arguments.out / "delta" / "events"))
    print(f"cold written in {time.perf_counter() - step:.1f} s", flush=True)
    step = time.perf_counter()
    asyncio.run(write_warm(events, arguments.out / "warm"))
    print(f"warm written in {time.perf_counter() - step:.1f} s", flush=True)
    if arguments.pg_schema:
        step = time.perf_counter()
        asyncio.run(write_hot(events, arguments.pg_dsn, arguments.pg_schema, arguments.out))
        print(f"hot written in {time.perf_counter() - step:.1f} s", flush=True)
    (arguments.out / "dataset.txt").write_text(
        f"events={events.height} end_ms={END_MS} generated={datetime.datetime.now(datetime.UTC).isoformat()}\n"
    )


if __name__ == "__main__":
    main()
