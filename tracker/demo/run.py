"""Run the demo end to end: create tenants, send traffic, wait, and build the report."""

from __future__ import annotations

import json
import random
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

from tracker.demo.agents import load_user_agents
from tracker.demo.journeys import SentTally, Tenant, plan_journeys, send_bad_links, send_journeys
from tracker.demo.report import DemoReport, build_report, wait_for_counts
from tracker.errors import TrackerError

__all__ = ["DemoOptions", "read_admin_key", "run_demo"]

READY_PROBES = 3


@dataclass(frozen=True, slots=True)
class DemoOptions:
    """Everything `tracker demo` takes from its command line."""

    ingest_url: str
    api_url: str
    admin_key: str
    data_dir: Path | None
    journeys: int
    tenants: int
    conversion_rate: float
    bot_share: float
    seed: int
    concurrency: int
    tier: str | None
    timeout: float
    settle_seconds: float


def read_admin_key(data_dir: Path) -> str:
    """Return `admin_api_key` from `<data dir>/demo-tenant.json`, written by `tracker up`."""
    path = data_dir / "demo-tenant.json"
    try:
        return json.loads(path.read_text(encoding="utf-8"))["admin_api_key"]
    except FileNotFoundError:
        raise TrackerError(
            f"{path} not found: start `tracker up --data-dir {data_dir}` or pass --admin-key"
        ) from None
    except (ValueError, KeyError, TypeError):
        raise TrackerError(f"{path} has no admin_api_key: pass --admin-key") from None


def _check_reachable(client: httpx.Client, url: str, path: str, what: str) -> None:
    try:
        client.get(f"{url}{path}")
    except httpx.HTTPError as error:
        raise TrackerError(
            f"{what} at {url} is unreachable ({type(error).__name__}: {error}); "
            f"check the URL and that the platform is running"
        ) from None


def _create_tenants(client: httpx.Client, options: DemoOptions) -> list[Tenant]:
    tenants = []
    for index in range(options.tenants):
        response = client.post(
            f"{options.api_url}/api/tenants",
            json={"name": f"demo traffic {index + 1}", "plan": "pro"},
            headers={"Authorization": f"Bearer {options.admin_key}"},
        )
        if response.status_code != 201 and response.status_code != 200:
            raise TrackerError(
                f"creating a tenant through the API failed with {response.status_code}: "
                f"{response.text[:300]}"
            )
        body = response.json()
        tenants.append(
            Tenant(
                body["tenant"]["key_prefix"],
                bytes.fromhex(body["hmac_secret_hex"]),
                body["api_key"],
            )
        )
    return tenants


def _wait_until_ingest_knows(
    client: httpx.Client, options: DemoOptions, tenants: list[Tenant]
) -> None:
    """Wait until ingest has loaded the new tenants from the registry.

    A link with a wrong signature records no event: ingest answers `unknown_tenant` until it
    knows the tenant and `invalid_signature` afterwards. Several ingest processes refresh
    independently, so several answers in a row must be `invalid_signature`.
    """
    bad_sig = "0" * 64
    deadline = time.monotonic() + 60
    for tenant in tenants:
        streak = 0
        while streak < READY_PROBES:
            response = client.get(
                f"{options.ingest_url}/t",
                params={"url": "https://example.com/", "sig": f"{tenant.key_prefix}_{bad_sig}"},
            )
            code = (
                response.json().get("error", {}).get("code")
                if response.status_code == 403
                else None
            )
            streak = streak + 1 if code == "invalid_signature" else 0
            if time.monotonic() > deadline:
                raise TrackerError(
                    f"ingest did not load tenant {tenant.key_prefix} within 60 s; "
                    "check that ingest and the API share one registry"
                )
            if streak < READY_PROBES:
                time.sleep(0.2)


def run_demo(options: DemoOptions) -> tuple[DemoReport, SentTally]:
    """Send the demo traffic and return its comparison with the platform's counts."""
    agents = load_user_agents()
    rng = random.Random(options.seed)
    tally = SentTally()
    with httpx.Client(timeout=30.0, follow_redirects=False) as client:
        _check_reachable(client, options.ingest_url, "/health", "ingest")
        _check_reachable(client, options.api_url, "/api/health", "the platform API")
        tenants = _create_tenants(client, options)
        _wait_until_ingest_knows(client, options, tenants)

        journeys = plan_journeys(
            tenants,
            agents,
            count=options.journeys,
            conversion_rate=options.conversion_rate,
            bot_share=options.bot_share,
            rng=rng,
        )
        for tenant in tenants:
            tally.tenant(tenant.key_prefix)
        send_journeys(client, options.ingest_url, journeys, tally, concurrency=options.concurrency)
        bad_links = max(1, options.journeys // 20)
        send_bad_links(
            client,
            options.ingest_url,
            tenants,
            agents,
            tampered=bad_links,
            expired=bad_links,
            rng=rng,
            tally=tally,
        )

        wait_for_counts(
            client,
            options.api_url,
            tenants,
            tally,
            tier=options.tier,
            timeout=options.timeout,
            settle_seconds=options.settle_seconds,
        )
        report = build_report(
            client,
            options.api_url,
            tenants,
            tally,
            tier=options.tier,
            registry_dir=options.data_dir,
        )
    return report, tally
