"""Write a Markdown summary of a pytest-benchmark JSON file, each benchmark beside its baseline.

Within a benchmark group, the baseline is the benchmark whose name contains `baseline`, or
whose parameters include the value `python` or `baseline` (the codec benchmarks time each
case as `extension` and `python`). The ratio is the benchmark's mean time divided by the
baseline's mean time, so 0.25 means four times faster than the baseline. The summary is
written next to the JSON with the suffix `.md`:

    python bench/summarize.py bench/results/2026-12-04-abc1234.json
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from pathlib import Path

BASELINE_PARAM_VALUES = {"python", "baseline"}


def is_baseline(benchmark: dict) -> bool:
    if "baseline" in benchmark["name"]:
        return True
    params = benchmark.get("params") or {}
    return any(str(value) in BASELINE_PARAM_VALUES for value in params.values())


def format_seconds(seconds: float) -> str:
    """Format a duration with the unit that keeps 1 to 3 integer digits."""
    for unit, scale in (("s", 1.0), ("ms", 1e-3), ("µs", 1e-6)):
        if seconds >= scale:
            return f"{seconds / scale:,.2f} {unit}"
    return f"{seconds / 1e-9:,.1f} ns"


def summarize(record: dict) -> str:
    """Return the Markdown summary: one table per group, baseline first."""
    groups: dict[str, list[dict]] = defaultdict(list)
    for benchmark in record.get("benchmarks", []):
        groups[benchmark.get("group") or "(no group)"].append(benchmark)

    commit = record.get("commit_info", {})
    machine = record.get("machine_info", {})
    lines = [
        f"# Benchmarks, {record.get('datetime', 'unknown date')}",
        "",
        f"Commit `{commit.get('id', 'unknown')[:12]}`"
        f"{' (uncommitted changes)' if commit.get('dirty') else ''}; "
        f"{machine.get('cpu', {}).get('brand_raw', 'unknown CPU')}, "
        f"{machine.get('cpu', {}).get('count', '?')} CPUs, Python {machine.get('python_version', '?')}.",
        "Ratio: mean time over the baseline's mean time in the same group and run (below 1 is faster).",
        "",
    ]
    if not groups:
        lines.append("The file holds no benchmarks.")
        return "\n".join(lines) + "\n"

    for group in sorted(groups):
        members = groups[group]
        baselines = [b for b in members if is_baseline(b)]
        baseline = baselines[0] if baselines else None
        lines += [
            f"## {group}",
            "",
            "| benchmark | mean | median | ops/s | rounds | ratio to baseline |",
            "|---|---|---|---|---|---|",
        ]
        ordered = ([baseline] if baseline else []) + [b for b in members if b is not baseline]
        for benchmark in ordered:
            stats = benchmark["stats"]
            if baseline is None:
                ratio = "no baseline in group"
            elif benchmark is baseline:
                ratio = "baseline"
            else:
                ratio = f"{stats['mean'] / baseline['stats']['mean']:.3f}"
            lines.append(
                f"| `{benchmark['name']}` | {format_seconds(stats['mean'])} | "
                f"{format_seconds(stats['median'])} | {stats['ops']:,.1f} | {stats['rounds']} | {ratio} |"
            )
        lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("results", type=Path, help="JSON written by --benchmark-json.")
    args = parser.parse_args(argv)
    try:
        record = json.loads(args.results.read_text(encoding="utf-8"))
    except FileNotFoundError:
        print(f"error: {args.results} not found; run `nox -s bench` first", file=sys.stderr)
        return 1
    except json.JSONDecodeError as error:
        print(f"error: {args.results} is not valid JSON ({error})", file=sys.stderr)
        return 1
    if not isinstance(record, dict) or not isinstance(record.get("benchmarks"), list):
        print(
            f"error: {args.results} is not a pytest-benchmark JSON file (no 'benchmarks' list)",
            file=sys.stderr,
        )
        return 1
    output = args.results.with_suffix(".md")
    output.write_text(summarize(record), encoding="utf-8")
    print(f"wrote {output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
