"""Read the platform's counts back through the API and compare them with what the demo sent.

Every check is a named pair of numbers, expected and reported; the demo passes only when
every pair agrees.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from tracker.demo.journeys import SentTally, Tenant
from tracker.errors import TrackerError

__all__ = ["Check", "DemoReport", "build_report", "render_text", "wait_for_counts"]

log = logging.getLogger(__name__)

QUERY_HOURS = "24"


@dataclass(frozen=True, slots=True)
class Check:
    """One number the platform reported beside the number the demo expected."""

    tenant: str
    name: str
    expected: Any
    reported: Any

    @property
    def agrees(self) -> bool:
        return self.expected == self.reported


@dataclass
class DemoReport:
    """All checks, how drops were counted, and the tier that answered."""

    checks: list[Check] = field(default_factory=list)
    bot_method: str = ""
    tiers: set[str] = field(default_factory=set)
    failures: list[str] = field(default_factory=list)

    @property
    def agrees(self) -> bool:
        return not self.failures and all(check.agrees for check in self.checks)

    def as_dict(self) -> dict[str, Any]:
        return {
            "agrees": self.agrees,
            "bot_method": self.bot_method,
            "tiers": sorted(self.tiers),
            "failures": self.failures,
            "checks": [
                {
                    "tenant": c.tenant,
                    "name": c.name,
                    "expected": c.expected,
                    "reported": c.reported,
                    "agrees": c.agrees,
                }
                for c in self.checks
            ],
        }


def _get(
    client: httpx.Client, api_url: str, path: str, tenant: Tenant, params: dict[str, str]
) -> dict:
    response = client.get(
        f"{api_url}{path}", params=params, headers={"Authorization": f"Bearer {tenant.api_key}"}
    )
    if response.status_code != 200:
        raise TrackerError(
            f"GET {path} for tenant {tenant.key_prefix} failed with {response.status_code}: "
            f"{response.text[:300]}"
        )
    return response.json()


def _stats(
    client: httpx.Client, api_url: str, tenant: Tenant, tier: str | None, **params: str
) -> dict:
    query = {"hours": QUERY_HOURS, **params}
    if tier:
        query["tier"] = tier
    return _get(client, api_url, "/api/events/stats", tenant, query)


def wait_for_counts(
    client: httpx.Client,
    api_url: str,
    tenants: list[Tenant],
    tally: SentTally,
    *,
    tier: str | None,
    timeout: float,
    settle_seconds: float,
) -> bool:
    """Poll each tenant's stats total until it reaches the clean count the demo expects.

    Stops early when no total has changed for `settle_seconds`, and at `timeout`. Returns
    whether every total reached its expected value; the report then shows any gap.
    """
    deadline = time.monotonic() + timeout
    last_totals: dict[str, int] = {}
    last_change = time.monotonic()
    while True:
        totals = {t.key_prefix: int(_stats(client, api_url, t, tier)["total"]) for t in tenants}
        expected = {
            t.key_prefix: tally.tenant(t.key_prefix).accepted_events
            - tally.tenant(t.key_prefix).bot_clicks
            for t in tenants
        }
        if totals == expected:
            return True
        now = time.monotonic()
        if totals != last_totals:
            last_totals = totals
            last_change = now
        elif now - last_change >= settle_seconds and any(totals.values()):
            log.info(
                "Stats stopped changing before reaching the expected totals.",
                extra={"totals": totals},
            )
            return False
        if now >= deadline:
            log.info(
                "Timed out waiting for the platform to count the demo traffic.",
                extra={"totals": totals},
            )
            return False
        time.sleep(1.0)


def _drop_counts(data_dir: Path, key_prefix: str) -> dict[str, int]:
    from tracker.registry.db import Registry
    from tracker.registry.rules import drop_counts

    # The filter keys drops by the Unix time of the hour's start, in seconds.
    hour_start = int(time.time()) // 3600 * 3600
    registry = Registry(data_dir / "registry.db")
    try:
        rows = drop_counts(
            registry, key_prefix, start_hour=hour_start - 24 * 3600, end_hour=hour_start + 3600
        )
    finally:
        registry.close()
    totals: dict[str, int] = {}
    for row in rows:
        totals[row.reason] = totals.get(row.reason, 0) + row.count
    return totals


def build_report(
    client: httpx.Client,
    api_url: str,
    tenants: list[Tenant],
    tally: SentTally,
    *,
    tier: str | None,
    registry_dir: Path | None,
) -> DemoReport:
    """Query stats, the sub1 breakdown, the click to postback match and the drops per tenant."""
    report = DemoReport(failures=list(tally.failures))
    if registry_dir is not None and (registry_dir / "registry.db").exists():
        report.bot_method = "filter drop counts per reason, read from the registry"
    else:
        report.bot_method = "inferred: events accepted by ingest minus events counted by the API"
        registry_dir = None

    for tenant in tenants:
        sent = tally.tenant(tenant.key_prefix)
        prefix = tenant.key_prefix

        by_type = _stats(client, api_url, tenant, tier, group_by="event_type")
        report.tiers.add(by_type["tier"])
        counted = {row["event_type"]: row["count"] for row in by_type["rows"]}
        report.checks += [
            Check(prefix, "clicks (clean)", sent.human_clicks, counted.get("click", 0)),
            Check(prefix, "landing beacons", sent.pageviews, counted.get("pageview", 0)),
            Check(prefix, "conversions", sent.postbacks, counted.get("postback", 0)),
        ]

        by_sub1 = _stats(client, api_url, tenant, tier, group_by="param:sub1", event_type="click")
        reported_sub1 = {row["param:sub1"]: row["count"] for row in by_sub1["rows"]}
        report.checks += _per_key_checks(
            prefix, "clicks with sub1=", sent.clicks_by_sub1, reported_sub1
        )

        match_params = {
            "hours": QUERY_HOURS,
            "trigger": "click",
            "result": "postback",
            "on": "click_id",
            "window": "24h",
            "limit": "0",
        }
        if tier:
            match_params["tier"] = tier
        summary = _get(client, api_url, "/api/events/match", tenant, match_params)["summary"]
        expected_rate = round(sent.postbacks / sent.human_clicks, 6) if sent.human_clicks else 0.0
        report.checks += [
            Check(prefix, "matched click -> postback", sent.postbacks, summary["matched"]),
            Check(prefix, "match rate", expected_rate, round(float(summary["match_rate"]), 6)),
        ]

        if registry_dir is not None:
            drops = _drop_counts(registry_dir, prefix)
            report.checks += [
                Check(prefix, "bots filtered", sent.bot_clicks, drops.get("bot", 0)),
                Check(
                    prefix, "other filter drops", 0, sum(v for k, v in drops.items() if k != "bot")
                ),
            ]
        else:
            inferred = sent.accepted_events - int(by_type["total"])
            report.checks.append(Check(prefix, "bots filtered", sent.bot_clicks, inferred))

    report.checks += _per_key_checks(
        "*", "bad links answered ", tally.rejects_expected, tally.rejects_seen
    )
    return report


def _per_key_checks(tenant: str, label: str, expected: dict, reported: dict) -> list[Check]:
    """Return one check per key of either side, so a key missing on one side shows as 0."""
    keys = sorted(set(expected) | set(reported), key=str)
    return [
        Check(tenant, f"{label}{key}", expected.get(key, 0), reported.get(key, 0)) for key in keys
    ]


def render_text(report: DemoReport, tally: SentTally) -> str:
    """Format the report as an aligned table with a verdict on the last line."""
    lines = [
        f"Tiers answering: {', '.join(sorted(report.tiers)) or 'none'}",
        f"Bots filtered counted by: {report.bot_method}",
        "",
    ]
    width = max((len(c.name) for c in report.checks), default=10)
    lines.append(f"{'tenant':<10} {'check':<{width}}  {'sent':>12}  {'platform':>12}  ok")
    for check in report.checks:
        mark = "yes" if check.agrees else "NO"
        lines.append(
            f"{check.tenant:<10} {check.name:<{width}}  {check.expected!s:>12}  "
            f"{check.reported!s:>12}  {mark}"
        )
    for failure in report.failures[:20]:
        lines.append(f"unexpected answer: {failure}")
    if len(report.failures) > 20:
        lines.append(f"... and {len(report.failures) - 20} more unexpected answers")
    lines.append("")
    if report.agrees:
        lines.append("Every number the platform reported agrees with what was sent.")
    else:
        disagreeing = sum(not c.agrees for c in report.checks)
        lines.append(
            f"{disagreeing} checks disagree and {len(report.failures)} requests got an unexpected answer."
        )
    return "\n".join(lines)
