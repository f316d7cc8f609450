"""Event-to-client latency of the SSE gateway at a steady publish rate.

Starts `tracker sse` on a free loopback port over a fresh local broker, connects
SSE clients for one tenant, and publishes events at RATE events/s (messages of
BATCH events every BATCH / RATE seconds). Each event carries its publish time in
a param; a client's latency is its receive time minus that. The baseline, in
the same run, is a plain `Broker.read` poller in this process with the gateway's
poll interval: the delay any tail of the local log has before SSE adds anything.

Run: `python bench/sse_latency.py [--rate 5000] [--seconds 10] [--clients 4]`.
The report goes to bench/results/sse-latency.md.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import orjson

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.conftest import free_port  # noqa: E402
from tracker._core import decode_record_batch, encode_record_batch, partition_for, uuid7  # noqa: E402
from tracker.broker import open_broker  # noqa: E402
from tracker.broker.settings import BrokerSettings  # noqa: E402
from tracker.registry.api_keys import create_api_key  # noqa: E402
from tracker.registry.db import Registry  # noqa: E402
from tracker.settings import Env  # noqa: E402

RESULTS = REPO / "bench" / "results" / "sse-latency.md"
PARTITIONS = 4
TENANT = "bench"
BATCH = 50
SENT_MARKER = '"sent_ns":"'


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def make_event(sent_ns: int) -> bytes:
    return orjson.dumps(
        {
            "event_id": uuid7(),
            "event_type": "click",
            "timestamp": sent_ns // 1_000_000,
            "ip": "203.0.113.9",
            "user_agent": "bench",
            "referer": "",
            "accept_language": "en",
            "request_path": "/t",
            "request_host": "track.example.com",
            "params": {"key_prefix": TENANT, "sent_ns": str(sent_ns)},
        }
    )


async def sse_client(url: str, key: str, latencies: list[float], ready: asyncio.Event) -> None:
    headers = {"Authorization": f"Bearer {key}"}
    async with (
        httpx.AsyncClient(timeout=None) as client,
        client.stream("GET", url, headers=headers) as response,
    ):
        ready.set()
        async for line in response.aiter_lines():
            if line.startswith("data: "):
                # A string search instead of a JSON parse keeps the client from being the bottleneck.
                start = line.index(SENT_MARKER) + len(SENT_MARKER)
                sent_ns = int(line[start : line.index('"', start)])
                latencies.append((time.time_ns() - sent_ns) / 1e6)


async def baseline_tail(
    broker, partition: int, latencies: list[float], stop: asyncio.Event, poll: float
) -> None:
    position = (await broker.end_offset("events", partition) or -1) + 1
    while not stop.is_set():
        messages = await broker.read("events", partition, position, 64)
        for message in messages:
            for raw in decode_record_batch(message.payload):
                sent_ns = int(orjson.loads(raw)["params"]["sent_ns"])
                latencies.append((time.time_ns() - sent_ns) / 1e6)
            position = message.offset + 1
        if not messages:
            await asyncio.sleep(poll)


async def run(rate: int, seconds: float, clients: int) -> list[str]:
    data_dir = Path(tempfile.mkdtemp(prefix="sse-bench-"))
    env = {
        "BROKER": "local",
        "TRACKER_DATA_DIR": str(data_dir),
        "BROKER_PARTITIONS": str(PARTITIONS),
        "LOCAL_LOG_SYNC": "normal",
        "TRACKER_ENV_FILE": str(data_dir / "absent.env"),
    }
    registry = Registry(data_dir / "registry.db")
    registry.connection().execute(
        "INSERT INTO tenants (key_prefix, created_at, updated_at) VALUES (?, 0, 0)", (TENANT,)
    )
    key = create_api_key(registry, key_prefix=TENANT, scope="read").raw_key
    registry.close()

    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-c", "from tracker.cli.main import main; main()", "sse"],
        env={**os.environ, **env, "SSE_PORT": str(port), "SSE_CLIENT_BUFFER": "100000"},
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    broker = open_broker(BrokerSettings.from_env(Env(env)))
    await broker.connect()
    try:
        base = f"http://127.0.0.1:{port}"
        async with httpx.AsyncClient() as probe:
            for _ in range(300):
                try:
                    if (await probe.get(f"{base}/health")).json()["status"] == "ok":
                        break
                except httpx.HTTPError:
                    pass
                await asyncio.sleep(0.1)

        per_client: list[list[float]] = [[] for _ in range(clients)]
        readies = [asyncio.Event() for _ in range(clients)]
        tasks = [
            asyncio.create_task(sse_client(f"{base}/events/stream", key, per_client[i], readies[i]))
            for i in range(clients)
        ]
        await asyncio.gather(*(ready.wait() for ready in readies))
        await asyncio.sleep(0.5)

        baseline: list[float] = []
        stop = asyncio.Event()
        partition = partition_for(TENANT, PARTITIONS)
        tail = asyncio.create_task(baseline_tail(broker, partition, baseline, stop, 0.02))

        sent = 0
        started = time.perf_counter()
        while time.perf_counter() - started < seconds:
            now_ns = time.time_ns()
            await broker.publish(
                "events",
                partition,
                [encode_record_batch([make_event(now_ns) for _ in range(BATCH)])],
            )
            sent += BATCH
            next_at = started + (sent / rate)
            await asyncio.sleep(max(0.0, next_at - time.perf_counter()))
        achieved = sent / (time.perf_counter() - started)
        await asyncio.sleep(2.0)
        stop.set()
        await tail
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    finally:
        process.terminate()
        process.wait(10)
        await broker.close()

    latencies = [value for values in per_client for value in values]
    received = min(len(values) for values in per_client)
    lines = [
        f"{sent:,} events published at {achieved:,.0f} events/s for {seconds:g} s to one tenant; "
        f"{clients} SSE clients each received at least {received:,}.",
        "2 shared CPU cores (other engineers' jobs ran at the same time); gateway, broker and clients on one host;"
        f" 1-minute load average {os.getloadavg()[0]:.1f} at the end.",
        "",
        "| path | p50 ms | p99 ms | max ms | p99 ratio to baseline |",
        "|---|---|---|---|---|",
        f"| baseline: Broker.read poller (20 ms idle poll) | {statistics.median(baseline):.1f} | "
        f"{percentile(baseline, 0.99):.1f} | {max(baseline):.1f} | 1.00 |",
        f"| SSE gateway to client | {statistics.median(latencies):.1f} | {percentile(latencies, 0.99):.1f} | "
        f"{max(latencies):.1f} | {percentile(latencies, 0.99) / percentile(baseline, 0.99):.2f} |",
        "",
        f"Command: `python bench/sse_latency.py --rate {rate} --seconds {seconds:g} --clients {clients}`",
    ]
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(
        description="Measure SSE event-to-client latency at a steady rate."
    )
    parser.add_argument("--rate", type=int, default=5000, help="events per second to publish")
    parser.add_argument(
        "--seconds", type=float, default=10.0, help="how long to publish, in seconds"
    )
    parser.add_argument("--clients", type=int, default=2, help="SSE clients of the tenant")
    arguments = parser.parse_args()
    lines = asyncio.run(run(arguments.rate, arguments.seconds, arguments.clients))
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text("# SSE latency\n\n" + "\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
