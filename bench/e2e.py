"""End-to-end figure: events per second from `POST /batch` to a count in the cold tier (and hot).

Starts `tracker up` on free 127.0.0.1 ports and sends `--batches` bodies of 1,000 events from
a few threads. It polls the platform API once a second until the cold tier counts every
event, and the hot tier too when HOT_DSN is set (in a private PostgreSQL schema). It writes
the lag over time as CSV and, with matplotlib (the `bench` extra), as a PNG. It also reports
the sustained rate (events over the time from the first send to the last count) and the
event-to-query latency of one postback. Results go to `bench/results/e2e-<date>.json`, `.md`, `.csv` and `-lag.png`.

    python bench/e2e.py --batches 20
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import datetime as dt
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent))
from loadlib import free_port, machine_note

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results"
BROWSER_UA = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0 Safari/537.36"
BATCH_EVENTS = 1000


def start_platform(data_dir: Path, env: dict[str, str]) -> tuple[subprocess.Popen, dict, dict]:
    ports = {"port": free_port(), "api": free_port(), "sse": free_port()}
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tracker.cli.main",
            "up",
            "--data-dir",
            str(data_dir),
            "--port",
            str(ports["port"]),
            "--api-port",
            str(ports["api"]),
            "--sse-port",
            str(ports["sse"]),
            "--json",
        ],
        cwd=REPO,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    demo, ready = None, set()
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and len(ready) < 9 + ("HOT_DSN" in env):
        line = process.stdout.readline()
        if not line:
            break
        record = json.loads(line)
        demo = record.get("demo_tenant", demo)
        if record.get("state") == "running":
            ready.add(record["name"])
    if demo is None or len(ready) < 9:
        process.kill()
        raise SystemExit(f"tracker up did not become ready; components ready: {sorted(ready)}")
    threading.Thread(target=lambda: process.stdout.read(), daemon=True).start()
    return process, ports, demo


def count(client: httpx.Client, api: str, key: str, tier: str, **filters: str) -> int:
    response = client.get(
        f"{api}/api/events/stats",
        params={"hours": "24", "tier": tier, **filters},
        headers={"Authorization": f"Bearer {key}"},
    )
    return int(response.json()["total"]) if response.status_code == 200 else -1


def run(args: argparse.Namespace, env: dict[str, str], work: Path) -> dict:
    process, ports, demo = start_platform(work / "data", env)
    ingest, api = f"http://127.0.0.1:{ports['port']}", f"http://127.0.0.1:{ports['api']}"
    tiers = ["cold"] + (["hot"] if "HOT_DSN" in env else [])
    body = orjson.dumps(
        [
            {
                "event_type": "e2e",
                "params": {"key_prefix": "demo", "n": str(i), "sub1": f"s{i % 10}"},
            }
            for i in range(BATCH_EVENTS)
        ]
    )
    total = args.batches * BATCH_EVENTS
    samples: list[dict] = []
    try:
        with httpx.Client(timeout=120) as client:
            started = time.monotonic()

            def send(_index: int) -> int:
                response = client.post(
                    f"{ingest}/batch",
                    content=body,
                    headers={"Content-Type": "application/json", "User-Agent": BROWSER_UA},
                )
                return response.json()["accepted"] if response.status_code == 200 else 0

            with ThreadPoolExecutor(args.senders) as pool:
                futures = [pool.submit(send, i) for i in range(args.batches)]
                deadline = started + args.timeout
                while time.monotonic() < deadline:
                    sent = sum(f.result() for f in futures if f.done())
                    row = {"seconds": round(time.monotonic() - started, 2), "accepted": sent}
                    for tier in tiers:
                        row[f"{tier}_counted"] = count(
                            client, api, demo["api_key"], tier, event_type="e2e"
                        )
                        row[f"{tier}_lag"] = sent - row[f"{tier}_counted"]
                    samples.append(row)
                    if all(f.done() for f in futures) and all(
                        row[f"{t}_counted"] >= total for t in tiers
                    ):
                        break
                    time.sleep(1.0)
            accepted = sum(f.result() for f in futures)
            drained = {
                t: next((s["seconds"] for s in samples if s[f"{t}_counted"] >= total), None)
                for t in tiers
            }
            send_seconds = next((s["seconds"] for s in samples if s["accepted"] >= total), None)

            latency = {}
            for tier in tiers:
                click_id = f"e2e-{uuid.uuid4().hex[:12]}"
                sent_at = time.monotonic()
                client.get(
                    f"{ingest}/p",
                    params={"key_prefix": "demo", "click_id": click_id},
                    headers={"User-Agent": BROWSER_UA},
                )
                while time.monotonic() - sent_at < args.timeout:
                    if (
                        count(client, api, demo["api_key"], tier, **{"param.click_id": click_id})
                        == 1
                    ):
                        latency[tier] = round(time.monotonic() - sent_at, 2)
                        break
                    time.sleep(0.1)
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()

    return {
        "events_sent": total,
        "events_accepted": accepted,
        "ingest_seconds": send_seconds,
        "ingest_events_per_second": round(total / send_seconds) if send_seconds else None,
        "drained_seconds": drained,
        "end_to_end_events_per_second": {
            t: (round(total / s) if s else None) for t, s in drained.items()
        },
        "event_to_query_seconds": latency,
        "samples": samples,
    }


def plot_lag(samples: list[dict], path: Path, args: argparse.Namespace) -> bool:
    """Draw each tier's lag (accepted minus counted events) over time into a PNG at `path`.

    Returns False without writing when matplotlib, which comes with the `bench` extra, is
    not installed.
    """
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False

    seconds = [sample["seconds"] for sample in samples]
    figure, axes = plt.subplots(figsize=(8, 4.5))
    axes.step(
        seconds,
        [sample["accepted"] for sample in samples],
        where="post",
        color="0.6",
        linestyle="--",
        label="accepted by ingest",
    )
    for key in samples[0]:
        if key.endswith("_lag"):
            tier = key.removesuffix("_lag")
            axes.step(
                seconds, [sample[key] for sample in samples], where="post", label=f"{tier} tier lag"
            )
    axes.set_xlabel("seconds since the first batch was sent")
    axes.set_ylabel("events")
    axes.set_title(
        f"Consumer lag: {args.batches} batches of {BATCH_EVENTS:,} events from {args.senders} senders"
    )
    axes.set_ylim(bottom=0)
    axes.grid(alpha=0.3)
    axes.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return True


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--batches", type=int, default=20, help="Number of 1,000-event bodies.")
    parser.add_argument("--senders", type=int, default=4, help="Concurrent senders.")
    parser.add_argument(
        "--timeout", type=float, default=300, help="Seconds to wait for the tiers to count."
    )
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="e2e-bench-"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRACKER_")}
    # The bench sends from one address, so the per-IP rate limit of the event filter is lifted.
    env.update(
        {
            "TRACKER_ENV_FILE": str(work / "no.env"),
            "ARCHIVE_COMMIT_SECONDS": "1",
            "REGISTRY_REFRESH_SECONDS": "1",
            "FILTER_RATE_IP_LIMIT": "1000000000",
        }
    )
    schema = None
    if os.environ.get("HOT_DSN"):
        import asyncpg

        schema = f"e2e_{uuid.uuid4().hex[:12]}"

        async def execute(statement: str) -> None:
            connection = await asyncpg.connect(os.environ["HOT_DSN"])
            try:
                await connection.execute(statement)
            finally:
                await connection.close()

        asyncio.run(execute(f'CREATE SCHEMA "{schema}"'))
        env["HOT_SCHEMA"] = schema
    load_at_start = os.getloadavg()[0]
    try:
        result = run(args, env, work)
    finally:
        if schema:
            asyncio.run(execute(f'DROP SCHEMA "{schema}" CASCADE'))

    stamp = dt.date.today().isoformat()
    base = RESULTS / f"e2e-{stamp}"
    with open(base.with_suffix(".csv"), "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(result["samples"][0]))
        writer.writeheader()
        writer.writerows(result["samples"])
    plot_path = base.parent / f"{base.name}-lag.png"
    plotted = plot_lag(result["samples"], plot_path, args)
    plot = (
        f"plotted in {plot_path.name}"
        if plotted
        else "no PNG because matplotlib is not installed (install the `bench` extra)"
    )
    record = {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "command": "python bench/e2e.py " + " ".join(sys.argv[1:]),
        "machine": machine_note(),
        "load_average_1m_start": load_at_start,
        "hot_tier": bool(schema),
        **{k: v for k, v in result.items() if k != "samples"},
    }
    base.with_suffix(".json").write_text(json.dumps(record, indent=2) + "\n")
    lines = [
        f"# End-to-end run, {record['date']}",
        "",
        f"Command: `{record['command']}`. Machine: {record['machine']} at the end of the run,"
        f" 1-minute load average {load_at_start:.1f} at the start.",
        f"Lag over time: {base.with_suffix('.csv').name}, {plot}.",
        "",
        "| measure | value |",
        "|---|---|",
        f"| events sent / accepted | {record['events_sent']:,} / {record['events_accepted']:,} |",
        f"| ingest rate (all batches answered) | {record['ingest_events_per_second']} events/s |",
    ]
    for tier, rate in record["end_to_end_events_per_second"].items():
        lines.append(
            f"| sustained to the {tier} tier (first send to last count) | {rate} events/s |"
        )
    for tier, seconds in record["event_to_query_seconds"].items():
        lines.append(f"| one postback to a count in the {tier} tier | {seconds} s |")
    if plotted:
        lines += ["", f"![Lag over time per tier]({plot_path.name})"]
    base.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
