"""Load-test `tracker serve` with wrk against an empty Robyn handler measured in the same run.

Runs, each for `--seconds` at `--connections` (batch: `--batch-connections`):
the baseline server's GET /p, then `tracker serve` (local backend,
LOCAL_LOG_SYNC=full) on GET /p, signed GET /t and POST /batch with 1,000-event
bodies. It records req/s, p50/p99 latency, non-2xx responses, the servers' CPU
time per request and the peak RSS of every server process, then writes
`bench/results/ingest-<date>.json` and a Markdown table next to it. Needs
Debian's `wrk` (`apt-get install -y wrk`).

    python bench/load/run_ingest.py --seconds 10
"""

from __future__ import annotations

import argparse
import datetime as dt
import http.client
import json
import os
import platform
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from urllib.parse import quote

import orjson
import psutil

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
RESULTS = REPO / "bench" / "results"
SERVE_COMMAND = [sys.executable, "-c", "from tracker.cli.main import main; main()", "serve"]
BATCH_EVENTS = 1000


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_ready(port: int, path: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
            connection.request("GET", path)
            if connection.getresponse().status < 500:
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"server on port {port} did not answer {path} within {timeout} s")


class RssSampler:
    """Sample the RSS of a process tree every 0.2 s and keep each process's peak."""

    def __init__(self, root_pids: list[int]) -> None:
        self.roots = [psutil.Process(pid) for pid in root_pids]
        self.peaks: dict[int, int] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(0.2):
            for root in self.roots:
                try:
                    processes = [root, *root.children(recursive=True)]
                except psutil.NoSuchProcess:
                    continue
                for process in processes:
                    try:
                        rss = process.memory_info().rss
                    except psutil.NoSuchProcess:
                        continue
                    self.peaks[process.pid] = max(self.peaks.get(process.pid, 0), rss)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def peak_mib(self, exclude: set[int] = frozenset()) -> list[float]:
        return sorted(
            round(rss / 2**20, 1) for pid, rss in self.peaks.items() if pid not in exclude
        )


def tree_cpu_seconds(root_pids: list[int]) -> float:
    """Return the user plus system CPU seconds of the processes under `root_pids` so far."""
    total = 0.0
    for pid in root_pids:
        try:
            root = psutil.Process(pid)
            processes = [root, *root.children(recursive=True)]
        except psutil.NoSuchProcess:
            continue
        for process in processes:
            try:
                times = process.cpu_times()
            except psutil.NoSuchProcess:
                continue
            total += times.user + times.system
    return total


def run_wrk(
    url: str, seconds: int, connections: int, threads: int, script: Path, *script_args: str
) -> dict:
    command = [
        "wrk",
        f"-t{threads}",
        f"-c{connections}",
        f"-d{seconds}s",
        "--timeout",
        "10s",
        "-s",
        str(script),
        url,
    ]
    if script_args:
        command += ["--", *script_args]
    output = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    report = json.loads(output.strip().splitlines()[-1])
    report["requests_per_second"] = round(report["requests"] / (report["duration_us"] / 1e6), 1)
    report["p50_ms"] = round(report.pop("p50_us") / 1000, 2)
    report["p99_ms"] = round(report.pop("p99_us") / 1000, 2)
    report["max_ms"] = round(report.pop("max_us") / 1000, 2)
    return report


def start_baseline(port: int, processes: int, env: dict[str, str]) -> list[subprocess.Popen[bytes]]:
    # Several single-process servers on one port, like `tracker serve` (Robyn binds with SO_REUSEPORT).
    return [
        subprocess.Popen(
            [sys.executable, str(HERE / "baseline_server.py"), str(port)],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for _ in range(processes)
    ]


def stop(processes: list[subprocess.Popen[bytes]], sig: int = signal.SIGTERM) -> None:
    for process in processes:
        if process.poll() is None:
            process.send_signal(sig)
    for process in processes:
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def prepare_tenant(data_dir: Path) -> tuple[str, bytes]:
    sys.path.insert(0, str(REPO))
    from tracker.registry.db import Registry
    from tracker.registry.tenants import create_tenant

    registry = Registry(data_dir / "registry.db")
    created = create_tenant(registry, key_prefix="bench")
    registry.close()
    return created.key_prefix, created.hmac_secret


def batch_body(path: Path, key_prefix: str) -> int:
    events = [
        {
            "event_type": "bench",
            "params": {
                "key_prefix": key_prefix,
                "campaign": f"c{index % 50}",
                "sub1": "load-test",
                "n": str(index),
            },
        }
        for index in range(BATCH_EVENTS)
    ]
    body = orjson.dumps(events)
    path.write_bytes(body)
    return len(body)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--seconds", type=int, default=10, help="Duration of each wrk run in seconds."
    )
    parser.add_argument(
        "--connections", type=int, default=200, help="Concurrent connections for /p and /t."
    )
    parser.add_argument(
        "--batch-connections", type=int, default=50, help="Concurrent connections for /batch."
    )
    parser.add_argument("--threads", type=int, default=2, help="wrk threads.")
    parser.add_argument(
        "--processes", type=int, default=2, help="Server processes (INGEST_PROCESSES)."
    )
    parser.add_argument(
        "--workers", type=int, default=1, help="Robyn workers per process (INGEST_WORKERS)."
    )
    args = parser.parse_args()

    from tracker._core import sign_click

    load_at_start = os.getloadavg()[0]

    work = Path(tempfile.mkdtemp(prefix="ingest-bench-"))
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
            "INGEST_PROCESSES": str(args.processes),
            "INGEST_WORKERS": str(args.workers),
            "LOG_FORMAT": "json",
            "MAX_BODY_BYTES": str(max(16 * 2**20, body_bytes * 2)),
        }
    )
    results: dict[str, dict] = {}
    report_script = HERE / "report.lua"

    baseline_port = free_port()
    baseline = start_baseline(baseline_port, args.processes, env)
    try:
        wait_ready(baseline_port, "/p")
        baseline_pids = [process.pid for process in baseline]
        cpu_before = tree_cpu_seconds(baseline_pids)
        with RssSampler(baseline_pids) as sampler:
            results["baseline /p"] = run_wrk(
                f"http://127.0.0.1:{baseline_port}/p",
                args.seconds,
                args.connections,
                args.threads,
                report_script,
            )
        results["baseline /p"]["peak_rss_mib"] = sampler.peak_mib()
        results["baseline /p"]["cpu_ms_per_request"] = cpu_per_request(
            tree_cpu_seconds(baseline_pids) - cpu_before, results["baseline /p"]
        )
    finally:
        stop(baseline, signal.SIGKILL)

    port = free_port()
    env["PORT"] = str(port)
    with open(work / "serve.log", "wb") as log_file:
        serve = subprocess.Popen(SERVE_COMMAND, env=env, stdin=subprocess.DEVNULL, stderr=log_file)
    destination = "https://shop.example/landing?campaign=spring"
    sig = sign_click(secret, destination, key_prefix=key_prefix)
    signed_path = f"/t?url={quote(destination, safe='')}&sig={sig}&sub1=load"
    runs = [
        (
            "ingest /p",
            f"/p?key_prefix={key_prefix}&click_id=abc",
            args.connections,
            report_script,
            (),
        ),
        ("ingest signed /t", signed_path, args.connections, report_script, ()),
        (
            "ingest /batch (1,000 events)",
            "/batch",
            args.batch_connections,
            HERE / "batch.lua",
            (str(body_path),),
        ),
    ]
    try:
        wait_ready(port, "/health")
        for name, path, connections, script, script_args in runs:
            cpu_before = tree_cpu_seconds([serve.pid])
            with RssSampler([serve.pid]) as sampler:
                results[name] = run_wrk(
                    f"http://127.0.0.1:{port}{path}",
                    args.seconds,
                    connections,
                    args.threads,
                    script,
                    *script_args,
                )
            results[name]["peak_rss_mib"] = sampler.peak_mib(exclude={serve.pid})
            results[name]["cpu_ms_per_request"] = cpu_per_request(
                tree_cpu_seconds([serve.pid]) - cpu_before, results[name]
            )
            results[name]["connections"] = connections
    finally:
        stop([serve])

    results["baseline /p"]["connections"] = args.connections
    baseline_rps = results["baseline /p"]["requests_per_second"]
    for name in ("ingest /p", "ingest signed /t"):
        results[name]["ratio_to_baseline"] = round(
            results[name]["requests_per_second"] / baseline_rps, 3
        )
    batch = results["ingest /batch (1,000 events)"]
    batch["events_per_second"] = round(batch["requests_per_second"] * BATCH_EVENTS)

    stamp = dt.datetime.now(dt.UTC)
    record = {
        "date": stamp.isoformat(timespec="seconds"),
        "command": "python "
        + " ".join(
            [
                str(Path(sys.argv[0]).relative_to(REPO))
                if Path(sys.argv[0]).is_absolute()
                else sys.argv[0],
                *sys.argv[1:],
            ]
        ),
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "load_average_1m_start": load_at_start,
            "load_average_1m": os.getloadavg()[0],
        },
        "settings": vars(args)
        | {"broker": "local", "local_log_sync": "full", "batch_body_bytes": body_bytes},
        "results": results,
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    base = RESULTS / f"ingest-{stamp:%Y-%m-%d}"
    base.with_suffix(".json").write_text(json.dumps(record, indent=2) + "\n")
    base.with_suffix(".md").write_text(render_markdown(record))
    print(render_markdown(record))


def cpu_per_request(cpu_seconds: float, result: dict) -> float:
    """Return the servers' CPU milliseconds per completed request of one wrk run."""
    return round(cpu_seconds * 1000 / max(1, result["requests"]), 3)


def render_markdown(record: dict) -> str:
    lines = [
        f"# Ingest load run, {record['date']}",
        "",
        f"Command: `{record['command']}`. Machine: {record['machine']['cpus']} CPUs, "
        f"1-minute load average {record['machine']['load_average_1m_start']:.1f} at the start and "
        f"{record['machine']['load_average_1m']:.1f} at the end (shared with other jobs).",
        "",
        "| run | connections | req/s | vs baseline | events/s | p50 ms | p99 ms | non-2xx | server CPU ms per request | peak RSS MiB per server process |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, result in record["results"].items():
        lines.append(
            f"| {name} | {result['connections']} | {result['requests_per_second']:,.0f} | "
            f"{result.get('ratio_to_baseline', '')} | {result.get('events_per_second', '')} | "
            f"{result['p50_ms']} | {result['p99_ms']} | {result['non_2xx_3xx']} | "
            f"{result['cpu_ms_per_request']} | "
            f"{', '.join(str(value) for value in result['peak_rss_mib'])} |"
        )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
