"""Load-test ingest against an empty Robyn handler and a minimal axum server, in one run.

For each server it runs wrk on 127.0.0.1 with a discarded warm-up and then several measured
runs, and reports the median requests per second, p50 and p99 latency, errors, and the peak
RSS and CPU time of the server processes. `tracker serve` (local broker,
LOCAL_LOG_SYNC=full) is measured on GET /p, signed GET /t and POST /batch with 1,000-event
bodies, once per ingest process count in `--processes`, in alternating rounds with an empty
Robyn handler run with as many processes and sent the same requests. Results go to
`bench/results/load-<date>T<HHMM>.json` and `.md` (UTC).

    python bench/run_load.py --warmup 10 --seconds 15 --repeats 3 --processes 1 2
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import signal
import sys
import tempfile
from pathlib import Path
from urllib.parse import quote

from loadlib import (
    Target,
    batch_body,
    child_pids,
    free_port,
    machine_note,
    measure,
    measure_alternating,
    prepare_tenant,
    start_baseline,
    start_rust_baseline,
    start_serve,
    stop,
    wait_ready,
)

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results"
BATCH_EVENTS = 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--warmup", type=int, default=10, help="Warm-up seconds per target, discarded."
    )
    parser.add_argument("--seconds", type=int, default=15, help="Seconds per measured run.")
    parser.add_argument("--repeats", type=int, default=3, help="Measured runs per target.")
    parser.add_argument(
        "--connections", type=int, default=200, help="wrk connections for every target."
    )
    parser.add_argument(
        "--batch-connections", type=int, default=200, help="wrk connections for /batch."
    )
    parser.add_argument(
        "--processes", type=int, nargs="+", default=[1, 2], help="INGEST_PROCESSES values."
    )
    args = parser.parse_args()
    sys.path.insert(0, str(REPO))
    from tracker._core import sign_click

    work = Path(tempfile.mkdtemp(prefix="load-bench-"))
    data_dir = work / "data"
    data_dir.mkdir()
    key_prefix, secret = prepare_tenant(data_dir)
    body_path = work / "batch.json"
    body_bytes = batch_body(body_path, key_prefix)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TRACKER_", "PROMETHEUS_"))}
    env.update(
        {
            "TRACKER_ENV_FILE": str(work / "no.env"),
            "TRACKER_DATA_DIR": str(data_dir),
            "BROKER": "local",
            "LOCAL_LOG_SYNC": "full",
            "LOG_FORMAT": "json",
            "MAX_BODY_BYTES": str(max(16 * 2**20, body_bytes * 2)),
        }
    )
    load_at_start = os.getloadavg()[0]
    timing = {
        "connections": args.connections,
        "warmup": args.warmup,
        "seconds": args.seconds,
        "repeats": args.repeats,
    }
    results = []
    destination = "https://shop.example/landing?campaign=spring"
    sig = sign_click(secret, destination, key_prefix=key_prefix)
    signed_path = f"/t?url={quote(destination, safe='')}&sig={sig}&sub1=load"

    port = free_port()
    rust = start_rust_baseline(port, work / "rust-events.jsonl")
    try:
        wait_ready(port, "/p")
        results.append(
            measure(
                "baseline axum /p",
                f"http://127.0.0.1:{port}/p?key_prefix=bench&click_id=abc",
                [rust.pid],
                **timing,
            )
        )
    finally:
        stop([rust], signal.SIGKILL)

    for processes in args.processes:
        # The empty handler runs with as many processes as the ingest service it is compared
        # with, and each pair of targets is loaded in turn, round by round.
        robyn_port, serve_port = free_port(), free_port()
        robyn = start_baseline(robyn_port, processes, env)
        serve = start_serve(env, serve_port, processes, work / f"serve-{processes}.log")
        try:
            wait_ready(robyn_port, "/p")
            wait_ready(serve_port, "/health")
            robyn_pids = [p.pid for p in robyn]
            serve_pids = child_pids(serve)
            pairs = [
                ("/p", "/p", f"/p?key_prefix={key_prefix}&click_id=abc", None),
                ("/t (signed URL, constant 307)", "signed /t", signed_path, None),
                ("/batch (body ignored)", "/batch (1,000 events)", "/batch", body_path),
            ]
            for baseline_label, ingest_label, path, body in pairs:
                connections = args.connections if body is None else args.batch_connections
                pair = [
                    Target(
                        f"baseline Robyn x{processes} {baseline_label}",
                        f"http://127.0.0.1:{robyn_port}{path}",
                        robyn_pids,
                        connections,
                        body,
                    ),
                    Target(
                        f"ingest x{processes} {ingest_label}",
                        f"http://127.0.0.1:{serve_port}{path}",
                        serve_pids,
                        connections,
                        body,
                        exclude_pids={serve.pid},
                    ),
                ]
                results.extend(
                    measure_alternating(
                        pair, warmup=args.warmup, seconds=args.seconds, repeats=args.repeats
                    )
                )
        finally:
            stop(robyn, signal.SIGKILL)
            stop([serve])

    record = {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "command": "python bench/run_load.py " + " ".join(sys.argv[1:]),
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "load_average_1m_start": load_at_start,
            "load_average_1m": os.getloadavg()[0],
            "note": machine_note(),
        },
        "settings": vars(args)
        | {"broker": "local", "local_log_sync": "full", "batch_body_bytes": body_bytes},
        "results": [r.as_dict() for r in results],
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    # Date and UTC time, so that several runs on one day keep their own files.
    base = RESULTS / f"load-{dt.datetime.now(dt.UTC).strftime('%Y-%m-%dT%H%M')}"
    base.with_suffix(".json").write_text(json.dumps(record, indent=2) + "\n")
    base.with_suffix(".md").write_text(render_markdown(record))
    print(render_markdown(record))


def render_markdown(record: dict) -> str:
    """Return the results table; /batch ratios compare events/s with the baselines' requests/s.

    An ingest row with N processes is compared with the Robyn baseline run with N processes.
    """
    by_name = {r["name"]: r for r in record["results"]}
    axum = by_name["baseline axum /p"]["requests_per_second"]
    lines = [
        f"# Ingest load run, {record['date']}",
        "",
        f"Command: `{record['command']}`. Machine: {record['machine']['note']}, at the end of the run"
        f" (1-minute load average {record['machine'].get('load_average_1m_start', float('nan')):.1f}"
        " at the start).",
        "Each row is the median of the measured wrk runs. The ratio columns divide the row's",
        "requests/s (events/s for /batch) by each baseline's requests/s from the same run; an",
        "ingest row with N processes is divided by the Robyn baseline with N processes, run in",
        "alternating rounds with it.",
        "`vs Robyn` divides by the baseline's GET /p; `vs same route` divides signed /t by the",
        "baseline's GET /t, which gets the same signed URL and answers a constant 307.",
        "Server CPU is the user and system time of the server processes over the measured runs,",
        "divided by the events they accepted; wrk runs on the same CPUs.",
        "",
        "| target | conns | req/s | events/s | vs Robyn | vs same route | vs axum | p50 ms"
        " | p99 ms | errors | server CPU µs per event | peak RSS MiB per process |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for result in record["results"]:
        rate = result["requests_per_second"]
        cpu = result.get("cpu_us_per_request")
        name = result["name"]
        if name.startswith("baseline Robyn") and "/batch" in name:
            # The empty handler stores nothing: only its request rate, CPU and memory compare.
            events_text = ratio_text = ""
            cpu_text = "" if cpu is None else f"{cpu:,.1f} per request"
        else:
            per_request = BATCH_EVENTS if "/batch" in name else 1
            events = rate * per_request
            events_text = f"{events:,.0f}"
            prefix = f"baseline Robyn x{_processes_of(name)}"
            robyn = by_name[f"{prefix} /p"]["requests_per_second"]
            same_route = _same_route_baseline(name, prefix, by_name)
            same_text = "" if same_route is None else f"{events / same_route:.3f}"
            ratio_text = f"{events / robyn:.3f} | {same_text} | {events / axum:.3f}"
            cpu_text = "" if cpu is None else f"{cpu / per_request:,.1f}"
        ratio_text = ratio_text or " |  | "
        lines.append(
            f"| {result['name']} | {result['connections']} | {rate:,.0f} | {events_text} | "
            f"{ratio_text} | {result['p50_ms']} | {result['p99_ms']} | "
            f"{result['errors']} | {cpu_text} | {', '.join(str(v) for v in result['peak_rss_mib'])} |"
        )
    return "\n".join(lines) + "\n"


def _same_route_baseline(name: str, prefix: str, by_name: dict) -> float | None:
    """Return the req/s of the baseline route that got the same requests as row `name`."""
    if name.endswith("signed /t") or name.startswith(f"{prefix} /t"):
        route = f"{prefix} /t (signed URL, constant 307)"
    elif name.endswith(" /p") and not name.startswith("baseline axum"):
        route = f"{prefix} /p"
    else:
        return None
    found = by_name.get(route)
    return None if found is None else found["requests_per_second"]


def _processes_of(name: str) -> int:
    """Return the process count in a result name such as "ingest x2 /p"; 1 for the axum row."""
    for word in name.split():
        if word.startswith("x") and word[1:].isdigit():
            return int(word[1:])
    return 1


if __name__ == "__main__":
    main()
