"""`tracker up` end to end: every component starts, counts a click and a postback, restarts a
dead child, and stops cleanly on SIGTERM."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import httpx
import pytest

from tests.conftest import free_port

BROWSER_UA = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 "
    "(KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36"
)


def _wait_for(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(0.3)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}; last value {last!r}")


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory):
    """One platform for the module; the tests run in file order and the last one stops it."""
    tmp_path = tmp_path_factory.mktemp("up")
    ports = {"port": free_port(), "api": free_port(), "sse": free_port()}
    data_dir = tmp_path / "data"
    env = dict(os.environ)
    env.pop("HOT_DSN", None)
    env.update({"ARCHIVE_COMMIT_SECONDS": "1", "REGISTRY_REFRESH_SECONDS": "1"})
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tracker.cli.main",
            "up",
            "--data-dir",
            str(data_dir),
            "--port",
            str(ports["port"]),
            "--api-port",
            str(ports["api"]),
            "--sse-port",
            str(ports["sse"]),
            "--json",
        ],
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    statuses: list[dict] = []
    try:
        demo = None
        deadline = time.monotonic() + 90
        ready: set[str] = set()
        while time.monotonic() < deadline and len(ready) < 9:
            line = process.stdout.readline()
            if not line:
                break
            record = json.loads(line)
            statuses.append(record)
            if "demo_tenant" in record:
                demo = record["demo_tenant"]
            elif record.get("state") == "running":
                ready.add(record["name"])
        assert demo is not None, "tracker up printed no demo tenant"
        assert len(ready) == 9, f"components ready: {sorted(ready)}"
        yield {"process": process, "demo": demo, "ports": ports, "statuses": statuses}
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def test_up_counts_click_and_postback(platform):
    demo = platform["demo"]
    ports = platform["ports"]
    base = f"http://127.0.0.1:{ports['port']}"
    api = f"http://127.0.0.1:{ports['api']}"
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

    stats = _wait_for(counted, 60, "the cold tier to count the click and the postback")
    assert {row["event_type"]: row["count"] for row in stats["rows"]} == {"click": 1, "postback": 1}
    assert stats["tier"] == "cold"


def test_up_restarts_dead_child(platform):
    process = platform["process"]
    statuses = platform["statuses"]
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

    record = _wait_for(restarted, 30, "the stats consumer to be restarted")
    assert record["pid"] != stats_pid


def test_up_stops_cleanly_on_sigterm(platform):
    process = platform["process"]
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=60) == 0, process.stderr.read()
