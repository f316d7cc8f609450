"""Benchmarks of the query tiers on the generated dataset (bench/gen_dataset.py).

Each tier runs a 7-day stats query for tenant `big` grouped by `param:sub1`;
the baseline in the same run is the same tier's ungrouped count over the same
window. Cold also runs match (click to postback on `click_id`) over the whole
30 days. `extra_info` carries the peak RSS sampled during the rounds, the
median CPU time of this process per round and the 1-minute load average.

Generate first, then run:

    python bench/gen_dataset.py --events 10000000 --postback-ratio 0.6 \\
        --out bench/.data/10m --pg-schema bench_q10m
    BENCH_DATA=bench/.data/10m BENCH_PG_SCHEMA=bench_q10m \\
        pytest bench/test_query.py --benchmark-only -p no:cacheprovider \\
        --benchmark-json=bench/results/query-<size>.json
"""

from __future__ import annotations

import asyncio
import os
import statistics
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

from tracker.query.cold import ColdTier
from tracker.query.cursor import CursorCodec
from tracker.query.hot import HotTier
from tracker.query.model import EventFilter, MatchQuery, StatsQuery
from tracker.query.warm import WarmTier

END_MS = 1_796_083_200_000  # END_MS of bench/gen_dataset.py
DAY_MS = 86_400_000
DATA = Path(os.environ.get("BENCH_DATA", "bench/.data/1m"))
PG_DSN = os.environ.get("TEST_PG_DSN", "postgresql://postgres@127.0.0.1:5432/test")
PG_SCHEMA = os.environ.get("BENCH_PG_SCHEMA", "bench_q1m")
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "7"))

WEEK = EventFilter("big", END_MS - 7 * DAY_MS, END_MS)
GROUPED = StatsQuery(WEEK, ("param:sub1",))
UNGROUPED = StatsQuery(WEEK)


class PeakRss:
    """Samples this process's resident set size every 5 ms while active."""

    def __init__(self) -> None:
        self._process = psutil.Process()
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self._process.memory_info().rss)
            self._stop.wait(0.005)

    def __enter__(self) -> PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


@pytest.fixture(scope="module")
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    if not (DATA / "dataset.txt").is_file():
        raise RuntimeError(f"no dataset in {DATA}: run bench/gen_dataset.py first")
    event_loop = asyncio.new_event_loop()
    yield event_loop
    event_loop.close()


@pytest.fixture(scope="module")
def tiers(loop: asyncio.AbstractEventLoop) -> Iterator[dict[str, Any]]:
    codec = CursorCodec(b"b" * 32)
    engines = {
        "cold": ColdTier(str(DATA / "delta" / "events"), codec, timeout_seconds=120),
        "warm": WarmTier(DATA / "warm", retention_days=3650, clock=lambda: END_MS),
        "hot": HotTier(PG_DSN, PG_SCHEMA, codec, timeout_seconds=120),
    }
    yield engines
    loop.run_until_complete(engines["hot"].close())


def run(benchmark: Any, loop: asyncio.AbstractEventLoop, call: Callable[[], Any]) -> Any:
    cpu_seconds: list[float] = []

    def measured() -> Any:
        # CPU of this process in all its threads; the PostgreSQL server's CPU is not included.
        started = time.process_time()
        result = loop.run_until_complete(call())
        cpu_seconds.append(time.process_time() - started)
        return result

    load_before = os.getloadavg()[0]
    with PeakRss() as rss:
        result = benchmark.pedantic(measured, rounds=ROUNDS, iterations=1, warmup_rounds=1)
    benchmark.extra_info["cpu_median_s"] = round(statistics.median(cpu_seconds[1:]), 3)
    benchmark.extra_info["load_1m_before_after"] = [load_before, os.getloadavg()[0]]
    benchmark.extra_info["peak_rss_mb"] = round(rss.peak / 2**20, 1)
    benchmark.extra_info["events"] = (DATA / "dataset.txt").read_text().split()[0]
    return result


@pytest.mark.parametrize("tier", ["cold", "warm", "hot"])
@pytest.mark.parametrize("grouped", [False, True], ids=["count", "by_sub1"])
def test_stats_week(
    benchmark: Any, loop: asyncio.AbstractEventLoop, tiers: dict[str, Any], tier: str, grouped: bool
) -> None:
    benchmark.group = f"stats-7d-{tier}"
    query = GROUPED if grouped else UNGROUPED
    result = run(benchmark, loop, lambda: tiers[tier].stats(query))
    benchmark.extra_info["total"] = result.total
    benchmark.extra_info["groups"] = len(result.rows)
    assert result.total > 0


def test_match_cold(benchmark: Any, loop: asyncio.AbstractEventLoop, tiers: dict[str, Any]) -> None:
    benchmark.group = "match-30d-cold"
    query = MatchQuery(
        "big", "click", "postback", "click_id", END_MS - 30 * DAY_MS, END_MS, 2 * DAY_MS, 100
    )
    result = run(benchmark, loop, lambda: tiers["cold"].match(query))
    benchmark.extra_info.update(
        {key: result.summary[key] for key in ("triggers", "results", "matched")}
    )
    assert result.summary["matched"] > 0


def test_match_cold_baseline_scan(
    benchmark: Any, loop: asyncio.AbstractEventLoop, tiers: dict[str, Any]
) -> None:
    # Baseline for match: the ungrouped count of the same events, with no pairing work.
    benchmark.group = "match-30d-cold"
    query = StatsQuery(EventFilter("big", END_MS - 30 * DAY_MS, END_MS, ("click", "postback")))
    result = run(benchmark, loop, lambda: tiers["cold"].stats(query))
    assert result.total > 0
