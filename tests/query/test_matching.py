"""Pairing rule: the vectorised and looping paths together equal a brute-force reading of the rule."""

from __future__ import annotations

import polars as pl
from hypothesis import given, settings
from hypothesis import strategies as st

from tracker.query.matching import CANDIDATE_SCHEMA, match_events, summarize

rows = st.lists(
    st.tuples(st.sampled_from(["a", "b", "é", "'"]), st.integers(0, 50), st.booleans()), max_size=60
)


def brute_force(
    candidates: list[tuple[str, int, str, bool]], window_ms: int
) -> list[tuple[str, str]]:
    triggers = sorted((c for c in candidates if c[3]), key=lambda c: (c[1], c[2]))
    results = [c for c in candidates if not c[3]]
    used: set[str] = set()
    pairs = []
    for on, timestamp, event_id, _ in triggers:
        eligible = [
            r
            for r in results
            if r[0] == on and r[2] not in used and 0 <= r[1] - timestamp <= window_ms
        ]
        if eligible:
            first = min(eligible, key=lambda r: (r[1], r[2]))
            used.add(first[2])
            pairs.append((event_id, first[2]))
    return pairs


@settings(max_examples=300, deadline=None)
@given(rows, st.integers(0, 20))
def test_matching_equals_brute_force(
    generated: list[tuple[str, int, bool]], window_ms: int
) -> None:
    candidates = [
        (on, timestamp, f"id{index:03d}", is_trigger)
        for index, (on, timestamp, is_trigger) in enumerate(generated)
    ]
    frame = pl.DataFrame(
        {name: [c[position] for c in candidates] for position, name in enumerate(CANDIDATE_SCHEMA)},
        schema=CANDIDATE_SCHEMA,
    )
    triggers, results, pairs = match_events(frame, window_ms)

    expected = brute_force(candidates, window_ms)
    assert triggers == sum(1 for c in candidates if c[3])
    assert results == len(candidates) - triggers
    assert sorted(zip(pairs["trigger_id"], pairs["result_id"], strict=True)) == sorted(expected)
    assert summarize(triggers, results, pairs)["matched"] == len(expected)


def test_summary_without_pairs_is_null() -> None:
    _, _, pairs = match_events(pl.DataFrame(schema=CANDIDATE_SCHEMA), 10)
    summary = summarize(0, 0, pairs)
    assert summary["match_rate"] == 0.0
    assert summary["time_delta_ms"] == {
        "p50": None,
        "p90": None,
        "p99": None,
        "min": None,
        "max": None,
    }
