"""Latency from a `/p` response to the event's row in the hot tier, under a steady `/batch` load.

Starts `tracker up` on free 127.0.0.1 ports with the hot writer on HOT_DSN (a private schema,
dropped afterwards). Sender threads post 100-event `/batch` bodies on a fixed schedule for
`--rate` events per second, while a probe thread sends one `/p` postback every `--probe-every`
seconds with a unique `probe` param. A watcher queries the hot table directly every 50 ms and
records the first time each probe's row appears. The latency of a probe is that time minus the
time its `/p` response arrived, so it includes up to 50 ms of polling delay. The run stops by
itself after `--seconds` of load plus at most `--drain-seconds` of waiting for late probes.

    HOT_DSN=postgresql://postgres@127.0.0.1:5432/test python bench/hot_latency.py --seconds 60

Results go to `bench/results/hot-latency.md`.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

import asyncpg
import httpx
import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent))
from e2e import BROWSER_UA, start_platform
from loadlib import machine_note

RESULTS = Path(__file__).resolve().parent / "results" / "hot-latency.md"
BODY_EVENTS = 100
POLL_SECONDS = 0.05


class Load:
    """Sender threads posting `/batch` bodies on a fixed schedule until `stop` is set."""

    def __init__(
        self, ingest: str, rate: int, senders: int, tenant: str, stop: threading.Event
    ) -> None:
        self.ingest = ingest
        self.interval = senders * BODY_EVENTS / rate
        self.senders = senders
        self.body = orjson.dumps(
            [
                {"event_type": "load", "params": {"key_prefix": tenant, "n": str(number)}}
                for number in range(BODY_EVENTS)
            ]
        )
        self.stop = stop
        self.lock = threading.Lock()
        self.accepted = 0
        self.failed = 0
        self.late_sends = 0

    def run(self, offset: float) -> None:
        with httpx.Client(timeout=30) as client:
            next_send = time.monotonic() + offset
            while not self.stop.is_set():
                delay = next_send - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                else:
                    with self.lock:
                        self.late_sends += 1
                next_send += self.interval
                try:
                    response = client.post(
                        f"{self.ingest}/batch",
                        content=self.body,
                        headers={"Content-Type": "application/json", "User-Agent": BROWSER_UA},
                    )
                    accepted = response.json()["accepted"] if response.status_code == 200 else 0
                except httpx.HTTPError:
                    accepted = 0
                with self.lock:
                    self.accepted += accepted
                    self.failed += BODY_EVENTS - accepted

    def start(self) -> list[threading.Thread]:
        threads = [
            threading.Thread(target=self.run, args=(index * self.interval / self.senders,))
            for index in range(self.senders)
        ]
        for thread in threads:
            thread.start()
        return threads


def send_probes(
    ingest: str, tenant: str, run_id: str, every: float, stop: threading.Event, responses: dict
) -> None:
    """Send one `/p` per `every` seconds and store when each response arrived, by probe number."""
    with httpx.Client(timeout=30) as client:
        number = 0
        next_send = time.monotonic()
        while not stop.is_set():
            time.sleep(max(0.0, next_send - time.monotonic()))
            next_send += every
            try:
                response = client.get(
                    f"{ingest}/p",
                    params={"key_prefix": tenant, "probe_run": run_id, "probe": str(number)},
                    headers={"User-Agent": BROWSER_UA},
                )
            except httpx.HTTPError:
                continue
            if response.status_code < 400:
                responses[str(number)] = time.monotonic()
            number += 1


async def watch(dsn: str, schema: str, run_id: str, seen: dict, until: threading.Event) -> None:
    """Poll the hot table for probe rows and store when each first appeared."""
    connection = await asyncpg.connect(dsn)
    probe_filter = orjson.dumps({"probe_run": run_id}).decode()
    try:
        while not until.is_set():
            try:
                rows = await connection.fetch(
                    f"SELECT params ->> 'probe' AS probe FROM \"{schema}\".events"
                    " WHERE params @> $1::jsonb",
                    probe_filter,
                )
            except asyncpg.UndefinedTableError:
                rows = []
            now = time.monotonic()
            for row in rows:
                seen.setdefault(row["probe"], now)
            await asyncio.sleep(POLL_SECONDS)
    finally:
        await connection.close()


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rate", type=int, default=5000, help="Load in events per second.")
    parser.add_argument("--senders", type=int, default=4, help="Sender threads for the load.")
    parser.add_argument("--seconds", type=float, default=60, help="Duration of the load.")
    parser.add_argument(
        "--probe-every", type=float, default=0.2, help="Seconds between two /p probes."
    )
    parser.add_argument(
        "--drain-seconds", type=float, default=30, help="Seconds to wait for late probes."
    )
    args = parser.parse_args()
    dsn = os.environ.get("HOT_DSN")
    if not dsn:
        raise SystemExit("HOT_DSN is missing: set it to a PostgreSQL DSN on 127.0.0.1")

    work = Path(tempfile.mkdtemp(prefix="hot-latency-"))
    schema = f"latency_{uuid.uuid4().hex[:12]}"
    env = {key: value for key, value in os.environ.items() if not key.startswith("TRACKER_")}
    # The load comes from one address, so the per-IP rate limit of the event filter is lifted.
    env.update(
        {
            "TRACKER_ENV_FILE": str(work / "no.env"),
            "FILTER_RATE_IP_LIMIT": "1000000000",
            "HOT_SCHEMA": schema,
        }
    )

    async def execute(statement: str) -> None:
        connection = await asyncpg.connect(dsn)
        try:
            await connection.execute(statement)
        finally:
            await connection.close()

    asyncio.run(execute(f'CREATE SCHEMA "{schema}"'))
    load_before = os.getloadavg()[0]
    try:
        process, ports, demo = start_platform(work / "data", env)
        ingest = f"http://127.0.0.1:{ports['port']}"
        tenant = demo["key_prefix"]
        run_id = uuid.uuid4().hex[:12]
        answered: dict[str, float] = {}
        seen: dict[str, float] = {}
        stop_load, stop_watch = threading.Event(), threading.Event()
        try:
            load = Load(ingest, args.rate, args.senders, tenant, stop_load)
            threads = load.start()
            prober = threading.Thread(
                target=send_probes,
                args=(ingest, tenant, run_id, args.probe_every, stop_load, answered),
            )
            prober.start()
            watcher = threading.Thread(
                target=lambda: asyncio.run(watch(dsn, schema, run_id, seen, stop_watch))
            )
            watcher.start()

            started = time.monotonic()
            time.sleep(args.seconds)
            stop_load.set()
            for thread in [*threads, prober]:
                thread.join(timeout=60)
            load_seconds = time.monotonic() - started
            deadline = time.monotonic() + args.drain_seconds
            while time.monotonic() < deadline and not set(answered) <= set(seen):
                time.sleep(0.2)
            stop_watch.set()
            watcher.join(timeout=30)
        finally:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                process.kill()
    finally:
        asyncio.run(execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))

    latencies = [seen[probe] - at for probe, at in answered.items() if probe in seen]
    missing = len(answered) - len(latencies)
    command = "python bench/hot_latency.py " + " ".join(sys.argv[1:])
    lines = [
        f"# /p to hot tier latency, {dt.datetime.now(dt.UTC).isoformat(timespec='seconds')}",
        "",
        f"Command: `HOT_DSN=... {command}` (PostgreSQL 15 on 127.0.0.1).",
        f"Machine: {machine_note()}; 1-minute load average {load_before:.1f} before the run.",
        "",
        "| measure | value |",
        "|---|---|",
        f"| load requested | {args.rate:,} events/s in {BODY_EVENTS}-event `/batch` bodies |",
        f"| load accepted | {load.accepted / load_seconds:,.0f} events/s"
        f" ({load.accepted:,} events in {load_seconds:.0f} s, {load.failed:,} not accepted,"
        f" {load.late_sends:,} bodies sent behind schedule) |",
        f"| probes answered / seen in the hot table | {len(answered)} / {len(latencies)}"
        f" ({missing} not seen within {args.drain_seconds:.0f} s after the load) |",
    ]
    if latencies:
        lines += [
            f"| latency p50 | {statistics.median(latencies):.2f} s |",
            f"| latency p90 | {percentile(latencies, 0.90):.2f} s |",
            f"| latency p99 | {percentile(latencies, 0.99):.2f} s |",
            f"| latency max | {max(latencies):.2f} s |",
        ]
    RESULTS.write_text("\n".join(lines) + "\n", encoding="utf-8")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
