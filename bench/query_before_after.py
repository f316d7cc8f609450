"""Compare an earlier version of the cold and hot query tiers with the current one, in one process.

The earlier `cold.py`, `matching.py` and `hot.py` come from a directory, for
example extracted from git:

    mkdir -p bench/.data/before && for name in cold matching hot; do
        git show 85c7161:tracker/query/$name.py > bench/.data/before/$name.py; done
    python bench/query_before_after.py --before bench/.data/before \\
        --data bench/.data/10m --pg-schema bench_q10m --rounds 3

Both versions answer the benchmark's questions (bench/test_query.py) in
interleaved rounds, so a change in the machine's load hits both sides. A third
hot variant filters the tenant with `params @>` through the GIN index, as the
hot tier does on a table without a `key_prefix` column. CPU time is this
process's, in all its threads; the PostgreSQL server's CPU is not included.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import importlib.util
import os
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from types import ModuleType
from typing import Any

from tracker.query import cold, hot
from tracker.query.cursor import CursorCodec
from tracker.query.model import EventFilter, MatchQuery, StatsQuery

END_MS = 1_796_083_200_000  # END_MS of bench/gen_dataset.py
DAY_MS = 86_400_000
STATS = StatsQuery(EventFilter("big", END_MS - 7 * DAY_MS, END_MS), ("param:sub1",))
MATCH = MatchQuery(
    "big", "click", "postback", "click_id", END_MS - 30 * DAY_MS, END_MS, 2 * DAY_MS, 100
)


def load_module(name: str, path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


async def measure(
    cases: list[tuple[str, Callable[[], Awaitable[Any]]]], rounds: int
) -> dict[str, tuple[list[float], list[float]]]:
    """Run every case once to warm up, then `rounds` interleaved rounds; return wall and CPU seconds."""
    timings: dict[str, tuple[list[float], list[float]]] = {name: ([], []) for name, _ in cases}
    for _, call in cases:
        await call()
    for _ in range(rounds):
        for name, call in cases:
            wall, cpu = time.perf_counter(), time.process_time()
            await call()
            timings[name][0].append(time.perf_counter() - wall)
            timings[name][1].append(time.process_time() - cpu)
        print(f"round done, load {os.getloadavg()[0]:.1f}", flush=True)
    return timings


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", type=Path, required=True, help="directory of the old modules")
    parser.add_argument("--data", type=Path, default=Path("bench/.data/10m"))
    parser.add_argument("--pg-dsn", default="postgresql://postgres@127.0.0.1:5432/test")
    parser.add_argument("--pg-schema", default="bench_q10m")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--cases", default="cold_stats,hot_stats,cold_match")
    arguments = parser.parse_args()
    selected = set(arguments.cases.split(","))

    old_matching = load_module("before_matching", arguments.before / "matching.py")
    old_cold = load_module("before_cold", arguments.before / "cold.py")
    old_cold.match_events = old_matching.match_events
    old_hot = load_module("before_hot", arguments.before / "hot.py")

    codec = CursorCodec(b"b" * 32)
    table = str(arguments.data / "delta" / "events")
    cold_before = old_cold.ColdTier(table, codec, timeout_seconds=900)
    cold_after = cold.ColdTier(table, codec, timeout_seconds=900)
    hot_engines = {
        name: module.HotTier(arguments.pg_dsn, arguments.pg_schema, codec, timeout_seconds=120)
        for name, module in (("before", old_hot), ("after", hot), ("gin", hot))
    }
    shape = await hot_engines["gin"]._shape_now()
    hot_engines["gin"]._shape = dataclasses.replace(shape, tenant_column=False)

    cases: list[tuple[str, Callable[[], Awaitable[Any]]]] = []
    if "cold_stats" in selected:
        cases += [
            ("cold stats, before", lambda: cold_before.stats(STATS)),
            ("cold stats, after", lambda: cold_after.stats(STATS)),
        ]
    if "hot_stats" in selected:
        cases += [
            (f"hot stats, {name}", lambda engine=engine: engine.stats(STATS))
            for name, engine in hot_engines.items()
        ]
    if "cold_match" in selected:
        cases += [
            ("cold match, before", lambda: cold_before.match(MATCH)),
            ("cold match, after", lambda: cold_after.match(MATCH)),
        ]
    print(f"load before {os.getloadavg()}", flush=True)
    try:
        timings = await measure(cases, arguments.rounds)
    finally:
        for engine in hot_engines.values():
            await engine.close()
    print(f"load after {os.getloadavg()}", flush=True)
    for name, (wall, cpu) in timings.items():
        print(
            f"{name:22s} wall median {statistics.median(wall) * 1000:8.0f} ms,"
            f" min {min(wall) * 1000:8.0f} ms, CPU median {statistics.median(cpu) * 1000:7.0f} ms"
        )


if __name__ == "__main__":
    asyncio.run(main())
