"""Compare two local-log layouts under concurrent writer processes: one SQLite file per topic
versus one file per partition.

Each writer process appends record-batch blobs of 1,000 events, one blob per
`BEGIN IMMEDIATE ... COMMIT` (the worst case for lock contention), to its own
partitions. The script prints and saves events/s for each layout and
synchronous mode; the local log uses the faster layout.

Run: `python bench/broker_layout.py [--writers 4] [--commits 150]`; results go to
`bench/results/broker_layout.json`.
"""

from __future__ import annotations

import argparse
import multiprocessing
import sqlite3
import tempfile
import time
from pathlib import Path

import orjson

from tracker._core import encode_record_batch

RESULTS = Path(__file__).parent / "results" / "broker_layout.json"
PARTITIONS = 24


def sample_blob() -> bytes:
    """Return one record batch of 1,000 events shaped like production traffic."""
    events = [
        orjson.dumps(
            {
                "event_id": f"019c4633-5078-7411-8858-{index:012d}",
                "event_type": "click",
                "timestamp": 1_770_704_294_008 + index,
                "ip": f"203.0.113.{index % 250}",
                "user_agent": "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 Chrome/131.0 Safari/537.36",
                "referer": "https://news.example.com/",
                "accept_language": "en-US",
                "request_path": "/t",
                "request_host": "track.example.com",
                "params": {
                    "key_prefix": f"tenant{index % 40}",
                    "campaign_id": f"camp_{index % 997}",
                },
            }
        )
        for index in range(1000)
    ]
    return encode_record_batch(events)


def open_database(path: Path, sync: str) -> sqlite3.Connection:
    connection = sqlite3.connect(path, isolation_level=None, timeout=60)
    connection.execute("PRAGMA busy_timeout = 60000")
    connection.execute("PRAGMA journal_mode = WAL")
    connection.execute(f"PRAGMA synchronous = {sync}")
    connection.execute(
        "CREATE TABLE IF NOT EXISTS messages (partition INTEGER, msg_offset INTEGER, payload BLOB,"
        " PRIMARY KEY (partition, msg_offset))"
    )
    connection.execute(
        "CREATE TABLE IF NOT EXISTS log_state (partition INTEGER PRIMARY KEY, next_offset INTEGER)"
    )
    return connection


def write(
    directory: str, layout: str, sync: str, writer: int, writers: int, commits: int, blob: bytes
) -> None:
    """Append `commits` blobs round-robin over this writer's partitions."""
    root = Path(directory)
    mine = [p for p in range(PARTITIONS) if p % writers == writer]
    connections: dict[int, sqlite3.Connection] = {}
    for partition in mine:
        path = root / ("topic.db" if layout == "per-topic" else f"p{partition:04d}.db")
        connections[partition] = open_database(path, sync)
    for index in range(commits):
        partition = mine[index % len(mine)]
        connection = connections[partition]
        connection.execute("BEGIN IMMEDIATE")
        row = connection.execute(
            "SELECT next_offset FROM log_state WHERE partition = ?", (partition,)
        ).fetchone()
        offset = 0 if row is None else row[0]
        connection.execute("INSERT INTO messages VALUES (?, ?, ?)", (partition, offset, blob))
        connection.execute(
            "INSERT OR REPLACE INTO log_state VALUES (?, ?)", (partition, offset + 1)
        )
        connection.execute("COMMIT")


def measure(layout: str, sync: str, writers: int, commits: int, blob: bytes) -> float:
    """Return events/s of `writers` processes appending `commits` blobs each."""
    with tempfile.TemporaryDirectory() as directory:
        # Create the schema before the clock starts.
        for path in [Path(directory) / "topic.db"] + [
            Path(directory) / f"p{p:04d}.db" for p in range(PARTITIONS)
        ]:
            open_database(path, sync).close()
        context = multiprocessing.get_context("spawn")
        processes = [
            context.Process(target=write, args=(directory, layout, sync, n, writers, commits, blob))
            for n in range(writers)
        ]
        started = time.perf_counter()
        for process in processes:
            process.start()
        for process in processes:
            process.join()
        elapsed = time.perf_counter() - started
        if any(process.exitcode != 0 for process in processes):
            raise SystemExit(f"a writer failed in layout {layout}")
    return writers * commits * 1000 / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--writers", type=int, default=4, help="writer processes")
    parser.add_argument(
        "--commits", type=int, default=150, help="commits per writer, one blob each"
    )
    arguments = parser.parse_args()
    blob = sample_blob()
    results = []
    for sync in ("NORMAL", "FULL"):
        for layout in ("per-topic", "per-partition"):
            rate = measure(layout, sync, arguments.writers, arguments.commits, blob)
            results.append({"layout": layout, "sync": sync, "events_per_second": round(rate)})
            print(f"{layout:14} synchronous={sync:6} {rate:12,.0f} events/s")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    summary = {
        "writers": arguments.writers,
        "commits_per_writer": arguments.commits,
        "blob_bytes": len(blob),
        "results": results,
    }
    RESULTS.write_bytes(orjson.dumps(summary, option=orjson.OPT_INDENT_2))


if __name__ == "__main__":
    main()
