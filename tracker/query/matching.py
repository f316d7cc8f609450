"""Event-pair matching shared by every tier that answers match queries.

The rule (docs/analytics.md): within each value of the `on` param, triggers are
taken in (timestamp, event_id) order, and each takes the first result not yet
taken whose timestamp is at or after its own and at most `window_ms` later.
Each result is used at most once. Tiers only select the candidate rows, so the
pairing itself is identical everywhere.
"""

from __future__ import annotations

import math
from typing import Any

import polars as pl

__all__ = [
    "CANDIDATE_SCHEMA",
    "PAIRS_SCHEMA",
    "listed_ids",
    "match_events",
    "pair_rows",
    "summarize",
]

CANDIDATE_SCHEMA = {
    "on": pl.String,
    "timestamp": pl.Int64,
    "event_id": pl.String,
    "is_trigger": pl.Boolean,
}


PAIRS_SCHEMA = {
    "trigger_id": pl.String,
    "trigger_ts": pl.Int64,
    "result_id": pl.String,
    "result_ts": pl.Int64,
}


def _pair_loop(triggers: pl.DataFrame, results: pl.DataFrame, window_ms: int) -> pl.DataFrame:
    """Pair sorted triggers and results of groups with several triggers, one trigger at a time."""
    t_group = triggers["group"].to_list()
    t_ts = triggers["timestamp"].to_list()
    t_id = triggers["event_id"].to_list()
    r_group = results["group"].to_list()
    r_ts = results["timestamp"].to_list()
    r_id = results["event_id"].to_list()

    # Two pointers: every result before `j` is taken or precedes the current trigger,
    # and triggers only move forward in time within a group, so none of those results
    # is ever eligible again.
    columns: dict[str, list] = {name: [] for name in PAIRS_SCHEMA}
    result_count = len(r_ts)
    j = 0
    for i, group in enumerate(t_group):
        timestamp = t_ts[i]
        while j < result_count and (
            r_group[j] < group or (r_group[j] == group and r_ts[j] < timestamp)
        ):
            j += 1
        if j < result_count and r_group[j] == group and r_ts[j] - timestamp <= window_ms:
            columns["trigger_id"].append(t_id[i])
            columns["trigger_ts"].append(timestamp)
            columns["result_id"].append(r_id[j])
            columns["result_ts"].append(r_ts[j])
            j += 1
    return pl.DataFrame(columns, schema=PAIRS_SCHEMA)


def match_events(candidates: pl.DataFrame, window_ms: int) -> tuple[int, int, pl.DataFrame]:
    """Pair the candidate rows; return (trigger count, result count, pairs in trigger order).

    `candidates` has the columns of CANDIDATE_SCHEMA: the `on` value (never
    null), timestamp, event_id and whether the row is a trigger. The pairs
    frame has the columns of PAIRS_SCHEMA.
    """
    frame = candidates.select(
        pl.col("on").cast(pl.String),
        pl.col("timestamp").cast(pl.Int64),
        pl.col("event_id").cast(pl.String),
        pl.col("is_trigger").cast(pl.Boolean),
    )
    triggers = frame.filter(pl.col("is_trigger")).drop("is_trigger")
    results = frame.filter(~pl.col("is_trigger")).drop("is_trigger")

    # Every (trigger, result) pair with the same `on` value and the result in the
    # trigger's window. Rows outside it never affect the pairing: a trigger with no
    # result in its window takes nothing, and a result in no trigger's window is
    # never taken. Joins and groups hash the `on` strings instead of sorting them.
    in_window = (
        triggers.select(
            "on", pl.col("event_id").alias("trigger_id"), pl.col("timestamp").alias("trigger_ts")
        )
        .join(
            results.select(
                "on", pl.col("event_id").alias("result_id"), pl.col("timestamp").alias("result_ts")
            ),
            on="on",
        )
        .filter(
            (pl.col("result_ts") >= pl.col("trigger_ts"))
            & (pl.col("result_ts") - pl.col("trigger_ts") <= window_ms)
        )
        .with_columns(pl.len().over("on").alias("choices"))
    )
    # Most `on` values have one trigger with one result in its window: that is the pair.
    contended = in_window.filter(pl.col("choices") > 1)
    per_value = contended.group_by("on").agg(pl.col("trigger_id").n_unique().alias("triggers"))
    one_trigger = contended.join(per_value.filter(pl.col("triggers") == 1), on="on", how="semi")
    several = contended.join(per_value.filter(pl.col("triggers") > 1), on="on", how="semi")

    # One trigger takes its earliest result; several triggers go through the
    # sequential loop, with a dense integer per `on` value for its comparisons.
    single_pairs = pl.concat(
        [
            in_window.filter(pl.col("choices") == 1).select(list(PAIRS_SCHEMA)),
            one_trigger.sort("on", "result_ts", "result_id")
            .unique("on", keep="first", maintain_order=True)
            .select(list(PAIRS_SCHEMA)),
        ]
    )
    several = several.with_columns(pl.col("on").rank("dense").cast(pl.Int64).alias("group"))
    loop_pairs = _pair_loop(
        several.select(
            "group", pl.col("trigger_ts").alias("timestamp"), pl.col("trigger_id").alias("event_id")
        )
        .unique()
        .sort("group", "timestamp", "event_id"),
        several.select(
            "group", pl.col("result_ts").alias("timestamp"), pl.col("result_id").alias("event_id")
        )
        .unique()
        .sort("group", "timestamp", "event_id"),
        window_ms,
    )
    pairs = pl.concat([single_pairs, loop_pairs]).sort("trigger_ts", "trigger_id")
    return triggers.height, results.height, pairs


def summarize(triggers: int, results: int, pairs: pl.DataFrame) -> dict[str, object]:
    """Return the match summary: counts, match rate and the time delta distribution.

    Percentiles are nearest-rank: the smallest delta with at least p% of the
    deltas at or below it.
    """
    deltas = (pairs["result_ts"] - pairs["trigger_ts"]).sort()
    distribution: dict[str, int | None] = dict.fromkeys(("p50", "p90", "p99", "min", "max"))
    if deltas.len():
        count = deltas.len()
        for name, percent in (("p50", 50), ("p90", 90), ("p99", 99)):
            rank = max(1, math.ceil(percent * count / 100))
            distribution[name] = int(deltas[rank - 1])
        distribution["min"] = int(deltas[0])
        distribution["max"] = int(deltas[-1])
    return {
        "triggers": triggers,
        "results": results,
        "matched": pairs.height,
        "match_rate": pairs.height / triggers if triggers else 0.0,
        "time_delta_ms": distribution,
    }


def listed_ids(pairs: pl.DataFrame, limit: int) -> list[str]:
    """Return the event ids of the first `limit` pairs, whose full events the answer lists."""
    listed = pairs.head(limit)
    return listed["trigger_id"].to_list() + listed["result_id"].to_list()


def pair_rows(
    pairs: pl.DataFrame, limit: int, events: dict[str, dict[str, Any]]
) -> list[dict[str, Any]]:
    """Return the first `limit` pairs with their full events, looked up by event id."""
    return [
        {
            "trigger_event": events[row["trigger_id"]],
            "result_event": events[row["result_id"]],
            "time_delta_ms": row["result_ts"] - row["trigger_ts"],
        }
        for row in pairs.head(limit).iter_rows(named=True)
    ]
