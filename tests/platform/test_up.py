"""`tracker up` end to end: every component starts, counts a click and a postback, restarts a
dead child, and stops cleanly on SIGTERM."""

from __future__ import annotations

import json
import os
import signal
import subprocess
from collections.abc import Iterator

import httpx
import pytest

from tests.platform_up import RunningUp, run_up, wait_until

BROWSER_UA = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 "
    "(KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36"
)


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningUp]:
    """One platform for the module; the tests run in file order and the last one stops it."""
    data_dir = tmp_path_factory.mktemp("up") / "data"
    with run_up(data_dir, stderr=subprocess.PIPE) as running:
        yield running


def test_up_counts_click_and_postback(platform):
    demo = platform.demo
    base = platform.ingest_url
    api = platform.api_url
    headers = {"User-Agent": BROWSER_UA}

    from tracker import _core

    destination = "https://example.com/landing"
    sig = _core.sign_click(bytes.fromhex(demo["hmac_secret_hex"]), destination, key_prefix="demo")
    click = httpx.get(f"{base}/t", params={"url": destination, "sig": sig}, headers=headers)
    assert click.status_code == 307
    click_id = httpx.URL(click.headers["location"]).params["ad_click_id"]

    postback = httpx.get(
        f"{base}/p",
        params={"key_prefix": "demo", "event_type": "postback", "click_id": click_id},
        headers=headers,
    )
    assert postback.status_code == 200

    auth = {"Authorization": f"Bearer {demo['api_key']}"}

    def counted():
        response = httpx.get(
            f"{api}/api/events/stats",
            params={"hours": "24", "group_by": "event_type", "tier": "cold"},
            headers=auth,
        )
        assert response.status_code == 200, response.text
        body = response.json()
        return body if body["total"] == 2 else None

    stats = wait_until(counted, 60, "the cold tier to count the click and the postback")
    assert {row["event_type"]: row["count"] for row in stats["rows"]} == {"click": 1, "postback": 1}
    assert stats["tier"] == "cold"


def test_up_restarts_dead_child(platform):
    process = platform.process
    statuses = platform.statuses
    stats_pid = next(
        s["pid"] for s in reversed(statuses) if s.get("name") == "stats" and s.get("pid")
    )
    os.kill(stats_pid, signal.SIGKILL)

    def restarted():
        line = process.stdout.readline()
        if not line:
            return None
        record = json.loads(line)
        return record if record.get("name") == "stats" and record.get("restarts") == 1 else None

    record = wait_until(restarted, 30, "the stats consumer to be restarted")
    assert record["pid"] != stats_pid


def test_up_stops_cleanly_on_sigterm(platform):
    process = platform.process
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=60) == 0, process.stderr.read()
