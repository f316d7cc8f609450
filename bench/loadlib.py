"""Shared load harness: repeated wrk runs with a warm-up, and the servers they measure.

It builds on the primitives of `bench/load/run_ingest.py`: the wrk runner with its Lua report
scripts, the RSS sampler, the Robyn baseline, and the tenant and batch body set-up. It adds
what a comparison across servers needs: a discarded warm-up run, several measured runs whose
median is reported, server CPU time per request, the axum baseline, and `tracker serve` with a
chosen number of processes. Everything listens on 127.0.0.1 ports from the OS.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH / "load"))

from run_ingest import (  # noqa: E402
    SERVE_COMMAND,
    RssSampler,
    batch_body,
    free_port,
    prepare_tenant,
    run_wrk,
    start_baseline,
    stop,
    wait_ready,
)

__all__ = [
    "RUST_BASELINE",
    "LoadResult",
    "Target",
    "batch_body",
    "child_pids",
    "free_port",
    "machine_note",
    "measure",
    "measure_alternating",
    "prepare_tenant",
    "server_cpu_seconds",
    "start_baseline",
    "start_rust_baseline",
    "start_serve",
    "stop",
    "wait_ready",
]

RUST_BASELINE = BENCH / "baseline_rust" / "target" / "release" / "baseline-rust"
REPORT_SCRIPT = BENCH / "load" / "report.lua"
BATCH_SCRIPT = BENCH / "load" / "batch.lua"


@dataclass
class LoadResult:
    """Median requests per second and latency over the measured runs, and each run's figures."""

    name: str
    connections: int
    runs: list[dict] = field(default_factory=list)
    peak_rss_mib: list[float] = field(default_factory=list)
    server_cpu_seconds: float = 0.0

    @property
    def requests_per_second(self) -> float:
        return statistics.median(run["requests_per_second"] for run in self.runs)

    @property
    def p50_ms(self) -> float:
        return statistics.median(run["p50_ms"] for run in self.runs)

    @property
    def p99_ms(self) -> float:
        return statistics.median(run["p99_ms"] for run in self.runs)

    @property
    def cpu_us_per_request(self) -> float:
        """Server CPU time (user + system, all server processes) per accepted request."""
        requests = sum(run["requests"] for run in self.runs)
        return self.server_cpu_seconds * 1e6 / requests if requests else float("nan")

    @property
    def non_2xx(self) -> int:
        return sum(run["non_2xx_3xx"] + run["socket_errors"] for run in self.runs)

    def as_dict(self) -> dict:
        return {
            "name": self.name,
            "connections": self.connections,
            "requests_per_second": round(self.requests_per_second, 1),
            "p50_ms": round(self.p50_ms, 2),
            "p99_ms": round(self.p99_ms, 2),
            "errors": self.non_2xx,
            "peak_rss_mib": self.peak_rss_mib,
            "server_cpu_seconds": round(self.server_cpu_seconds, 2),
            "cpu_us_per_request": round(self.cpu_us_per_request, 1),
            "runs": self.runs,
        }


def measure(
    name: str,
    url: str,
    pids: list[int],
    *,
    connections: int,
    warmup: int,
    seconds: int,
    repeats: int,
    threads: int = 2,
    body_path: Path | None = None,
    exclude_pids: set[int] = frozenset(),
) -> LoadResult:
    """Run wrk once for `warmup` seconds (discarded), then `repeats` times for `seconds`.

    RSS and server CPU time are measured over the measured runs only; `exclude_pids` drops
    launcher processes from both.
    """
    script = BATCH_SCRIPT if body_path is not None else REPORT_SCRIPT
    script_args = (str(body_path),) if body_path is not None else ()
    if warmup > 0:
        run_wrk(url, warmup, connections, threads, script, *script_args)
    result = LoadResult(name, connections)
    cpu_before = server_cpu_seconds(pids, exclude_pids)
    with RssSampler(pids) as sampler:
        for _ in range(repeats):
            result.runs.append(run_wrk(url, seconds, connections, threads, script, *script_args))
    result.server_cpu_seconds = server_cpu_seconds(pids, exclude_pids) - cpu_before
    result.peak_rss_mib = sampler.peak_mib(exclude=set(exclude_pids))
    return result


@dataclass
class Target:
    """One server and URL to load: what `measure_alternating` runs in turn with others."""

    name: str
    url: str
    pids: list[int]
    connections: int
    body_path: Path | None = None
    exclude_pids: set[int] = field(default_factory=set)


def measure_alternating(
    targets: list[Target], *, warmup: int, seconds: int, repeats: int, threads: int = 2
) -> list[LoadResult]:
    """Warm up each target, then run them in turn, `repeats` rounds, one wrk run each per round.

    A baseline and the server compared with it are measured seconds apart in every round, so
    a change in the machine's speed during the run reaches both. RSS and server CPU time are
    summed over each target's own measured runs.
    """
    results = [LoadResult(target.name, target.connections) for target in targets]
    peaks: list[dict[int, int]] = [{} for _ in targets]
    for target in targets:
        if warmup > 0:
            run_wrk(target.url, warmup, target.connections, threads, *_script(target.body_path))
    for _ in range(repeats):
        for target, result, peak in zip(targets, results, peaks, strict=True):
            cpu_before = server_cpu_seconds(target.pids, target.exclude_pids)
            with RssSampler(target.pids) as sampler:
                run = run_wrk(
                    target.url, seconds, target.connections, threads, *_script(target.body_path)
                )
            result.runs.append(run)
            result.server_cpu_seconds += (
                server_cpu_seconds(target.pids, target.exclude_pids) - cpu_before
            )
            for pid, rss in sampler.peaks.items():
                if pid not in target.exclude_pids:
                    peak[pid] = max(peak.get(pid, 0), rss)
    for result, peak in zip(results, peaks, strict=True):
        result.peak_rss_mib = sorted(round(rss / 2**20, 1) for rss in peak.values())
    return results


def _script(body_path: Path | None) -> tuple[Path, ...] | tuple[Path, str]:
    if body_path is None:
        return (REPORT_SCRIPT,)
    return (BATCH_SCRIPT, str(body_path))


def server_cpu_seconds(pids: list[int], exclude_pids: set[int] = frozenset()) -> float:
    """Sum the user and system CPU seconds of the server processes and their children.

    The process trees must not change during a measurement: a child that exits in between
    takes its CPU time with it.
    """
    import psutil

    # Keyed by pid, because `pids` may list a launcher and its children, whose trees overlap.
    processes: dict[int, psutil.Process] = {}
    for pid in pids:
        try:
            root = psutil.Process(pid)
            processes.update((p.pid, p) for p in [root, *root.children(recursive=True)])
        except psutil.NoSuchProcess:
            continue
    total = 0.0
    for pid, process in processes.items():
        if pid in exclude_pids:
            continue
        try:
            times = process.cpu_times()
        except psutil.NoSuchProcess:
            continue
        total += times.user + times.system
    return total


def start_rust_baseline(port: int, output: Path) -> subprocess.Popen[bytes]:
    """Start the release build of the axum baseline in `bench/baseline_rust`."""
    if not RUST_BASELINE.exists():
        raise FileNotFoundError(
            f"{RUST_BASELINE} is missing: run `cargo build --release` in bench/baseline_rust"
        )
    return subprocess.Popen(
        [str(RUST_BASELINE), str(port), str(output)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def start_serve(
    env: dict[str, str], port: int, processes: int, log_path: Path
) -> subprocess.Popen[bytes]:
    """Start `tracker serve` with INGEST_PROCESSES=`processes` on `port`."""
    serve_env = dict(env, PORT=str(port), INGEST_PROCESSES=str(processes))
    with open(log_path, "wb") as log_file:
        return subprocess.Popen(
            SERVE_COMMAND,
            env=serve_env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=log_file,
        )


def child_pids(process: subprocess.Popen[bytes]) -> list[int]:
    import psutil

    return [
        process.pid,
        *(child.pid for child in psutil.Process(process.pid).children(recursive=True)),
    ]


def machine_note() -> str:
    return f"{os.cpu_count()} CPUs, 1-minute load average {os.getloadavg()[0]:.1f} (shared machine)"
