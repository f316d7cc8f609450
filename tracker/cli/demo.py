"""The `tracker demo` command: drive a running platform with realistic traffic and check its answers."""

from __future__ import annotations

import json
from pathlib import Path

import typer

__all__ = ["demo"]


def demo(
    ingest_url: str = typer.Option(
        "http://127.0.0.1:3030", "--ingest-url", help="Base URL of ingest."
    ),
    api_url: str = typer.Option(
        "http://127.0.0.1:8787", "--api-url", help="Base URL of the platform API."
    ),
    admin_key: str | None = typer.Option(
        None,
        "--admin-key",
        envvar="ADMIN_API_KEY",
        help="Admin API key; default: read from --data-dir.",
    ),
    data_dir: Path | None = typer.Option(
        Path(".tracker"),
        "--data-dir",
        help="Data directory of `tracker up`: demo-tenant.json and the registry with filter drop counts.",
    ),
    journeys: int = typer.Option(
        300, "--journeys", min=1, max=100_000, help="Number of visitor journeys."
    ),
    tenants: int = typer.Option(3, "--tenants", min=1, max=50, help="Number of tenants to create."),
    conversion_rate: float = typer.Option(
        0.2,
        "--conversion-rate",
        min=0.0,
        max=1.0,
        help="Share of human journeys that send a postback.",
    ),
    bot_share: float = typer.Option(
        0.15, "--bot-share", min=0.0, max=1.0, help="Share of crawler journeys."
    ),
    seed: int = typer.Option(1, "--seed", help="Seed of the traffic plan."),
    concurrency: int = typer.Option(
        8, "--concurrency", min=1, max=256, help="Journeys sent at once."
    ),
    tier: str | None = typer.Option(
        None, "--tier", help="Query tier (hot, warm or cold); default: the router's choice."
    ),
    timeout: float = typer.Option(
        120.0, "--timeout", min=1.0, help="Seconds to wait for the platform to catch up."
    ),
    settle_seconds: float = typer.Option(
        20.0,
        "--settle-seconds",
        min=1.0,
        help="Stop waiting when counts stay unchanged this many seconds.",
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the report as one JSON object."),
) -> None:
    """Send click, landing beacon and postback journeys with real browser and crawler user
    agents to new tenants, then compare the API's stats, sub1 breakdown, match and filter
    drops with what was sent. Exit 1 if any number disagrees.

    Example: tracker demo --data-dir .tracker --journeys 500 --conversion-rate 0.1
    """
    from tracker.demo.report import render_text
    from tracker.demo.run import DemoOptions, read_admin_key, run_demo

    if tier is not None and tier not in ("hot", "warm", "cold"):
        raise typer.BadParameter(f"expected hot, warm or cold, got {tier!r}", param_hint="--tier")
    if admin_key is None:
        if data_dir is None:
            raise typer.BadParameter("pass --admin-key or --data-dir", param_hint="--admin-key")
        admin_key = read_admin_key(data_dir)
    options = DemoOptions(
        ingest_url=ingest_url.rstrip("/"),
        api_url=api_url.rstrip("/"),
        admin_key=admin_key,
        data_dir=data_dir,
        journeys=journeys,
        tenants=tenants,
        conversion_rate=conversion_rate,
        bot_share=bot_share,
        seed=seed,
        concurrency=concurrency,
        tier=tier,
        timeout=timeout,
        settle_seconds=settle_seconds,
    )
    report, tally = run_demo(options)
    if as_json:
        print(json.dumps(report.as_dict(), indent=2))
    else:
        print(render_text(report, tally))
    if not report.agrees:
        raise typer.Exit(1)
