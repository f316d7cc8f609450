"""Event-pair matching shared by every tier that answers match queries.

The rule (docs/analytics.md): within each value of the `on` param, triggers are
taken in (timestamp, event_id) order, and each takes the first result not yet
taken whose timestamp is at or after its own and at most `window_ms` later.
Each result is used at most once. Tiers only select the candidate rows, so the
pairing itself is identical everywhere.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import polars as pl

__all__ = ["Pair", "match_events", "summarize"]

CANDIDATE_SCHEMA = {"on": pl.String, "timestamp": pl.Int64, "event_id": pl.String, "is_trigger": pl.Boolean}


@dataclass(frozen=True, slots=True)
class Pair:
    """One matched trigger and result, by event id, with the delay between them."""

    trigger_id: str
    trigger_ts: int
    result_id: str
    result_ts: int

    @property
    def time_delta_ms(self) -> int:
        return self.result_ts - self.trigger_ts


def match_events(candidates: pl.DataFrame, window_ms: int) -> tuple[int, int, list[Pair]]:
    """Pair the candidate rows; return (trigger count, result count, pairs in trigger order).

    `candidates` has the columns of CANDIDATE_SCHEMA: the `on` value (never
    null), timestamp, event_id and whether the row is a trigger.
    """
    frame = candidates.select(
        pl.col("on").cast(pl.String),
        pl.col("timestamp").cast(pl.Int64),
        pl.col("event_id").cast(pl.String),
        pl.col("is_trigger").cast(pl.Boolean),
    )
    # A dense integer per `on` value keeps the loop below on integer comparisons.
    frame = frame.with_columns(pl.col("on").rank("dense").cast(pl.Int64).alias("group"))
    triggers = frame.filter(pl.col("is_trigger")).sort("group", "timestamp", "event_id")
    results = frame.filter(~pl.col("is_trigger")).sort("group", "timestamp", "event_id")

    t_group = triggers["group"].to_list()
    t_ts = triggers["timestamp"].to_list()
    t_id = triggers["event_id"].to_list()
    r_group = results["group"].to_list()
    r_ts = results["timestamp"].to_list()
    r_id = results["event_id"].to_list()

    # Two pointers: every result before `j` is taken or precedes the current trigger,
    # and triggers only move forward in time within a group, so none of them is
    # ever eligible again.
    pairs: list[Pair] = []
    result_count = len(r_ts)
    j = 0
    for i, group in enumerate(t_group):
        timestamp = t_ts[i]
        while j < result_count and (r_group[j] < group or (r_group[j] == group and r_ts[j] < timestamp)):
            j += 1
        if j < result_count and r_group[j] == group and r_ts[j] - timestamp <= window_ms:
            pairs.append(Pair(t_id[i], timestamp, r_id[j], r_ts[j]))
            j += 1

    pairs.sort(key=lambda pair: (pair.trigger_ts, pair.trigger_id))
    return len(t_ts), result_count, pairs


def _nearest_rank(sorted_values: list[int], percent: int) -> int:
    """Return the nearest-rank percentile: the smallest value with `percent`% at or below it."""
    rank = max(1, math.ceil(percent * len(sorted_values) / 100))
    return sorted_values[rank - 1]


def summarize(triggers: int, results: int, pairs: list[Pair]) -> dict[str, object]:
    """Return the match summary: counts, match rate and the time delta distribution."""
    deltas = sorted(pair.time_delta_ms for pair in pairs)
    if deltas:
        distribution: dict[str, int | None] = {
            "p50": _nearest_rank(deltas, 50),
            "p90": _nearest_rank(deltas, 90),
            "p99": _nearest_rank(deltas, 99),
            "min": deltas[0],
            "max": deltas[-1],
        }
    else:
        distribution = dict.fromkeys(("p50", "p90", "p99", "min", "max"))
    return {
        "triggers": triggers,
        "results": results,
        "matched": len(pairs),
        "match_rate": len(pairs) / triggers if triggers else 0.0,
        "time_delta_ms": distribution,
    }
