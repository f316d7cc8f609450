"""`tracker demo` against a `tracker up` started here: the report agrees with what was sent,
and bad input ends with a clear message and a non-zero exit code."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from tests.conftest import free_port
from tracker.demo.report import Check, DemoReport

DEMO = [sys.executable, "-m", "tracker.cli.main", "demo"]


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory):
    """One `tracker up` for the module, trusting 127.0.0.1 as a proxy so each visitor keeps its address."""
    data_dir = tmp_path_factory.mktemp("demo") / "data"
    ports = {"port": free_port(), "api": free_port(), "sse": free_port()}
    env = dict(os.environ)
    env.pop("HOT_DSN", None)
    env.update(
        {
            "ARCHIVE_COMMIT_SECONDS": "1",
            "REGISTRY_REFRESH_SECONDS": "1",
            "TRUSTED_PROXIES": "127.0.0.1/32",
        }
    )
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
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        ready: set[str] = set()
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and len(ready) < 9:
            line = process.stdout.readline()
            if not line:
                break
            record = json.loads(line)
            if record.get("state") == "running":
                ready.add(record["name"])
        assert len(ready) == 9, f"components ready: {sorted(ready)}"
        yield {
            "data_dir": data_dir,
            "ingest": f"http://127.0.0.1:{ports['port']}",
            "api": f"http://127.0.0.1:{ports['api']}",
        }
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _run(*args: str, timeout: float = 150) -> subprocess.CompletedProcess:
    # ADMIN_API_KEY would stand in for --admin-key, so the tests choose the key themselves.
    env = {name: value for name, value in os.environ.items() if name != "ADMIN_API_KEY"}
    return subprocess.run([*DEMO, *args], capture_output=True, text=True, timeout=timeout, env=env)


def test_demo_report_agrees_with_registry_drops(platform):
    result = _run(
        "--ingest-url",
        platform["ingest"],
        "--api-url",
        platform["api"],
        "--data-dir",
        str(platform["data_dir"]),
        "--journeys",
        "60",
        "--tenants",
        "2",
        "--bot-share",
        "0.2",
        "--conversion-rate",
        "0.3",
        "--seed",
        "7",
        "--json",
    )
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads(result.stdout)
    assert report["agrees"] is True
    assert report["failures"] == []
    assert report["bot_method"].startswith("filter drop counts")
    names = {check["name"] for check in report["checks"]}
    for name in (
        "clicks (clean)",
        "landing beacons",
        "conversions",
        "matched click -> postback",
        "match rate",
        "bots filtered",
        "bad links answered 403 invalid_signature",
        "bad links answered 403 signature_expired",
    ):
        assert name in names
    assert any(name.startswith("clicks with sub1=") for name in names)
    bots = sum(c["expected"] for c in report["checks"] if c["name"] == "bots filtered")
    assert bots > 0, "the plan sent no crawler, so the bot check proved nothing"
    conversions = sum(c["expected"] for c in report["checks"] if c["name"] == "conversions")
    assert conversions > 0


def test_demo_infers_bots_without_registry(platform, tmp_path):
    admin_key = json.loads((platform["data_dir"] / "demo-tenant.json").read_text())["admin_api_key"]
    result = _run(
        "--ingest-url",
        platform["ingest"],
        "--api-url",
        platform["api"],
        "--admin-key",
        admin_key,
        "--data-dir",
        str(tmp_path),
        "--journeys",
        "30",
        "--tenants",
        "1",
        "--seed",
        "11",
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "inferred: events accepted by ingest minus events counted by the API" in result.stdout
    assert result.stdout.rstrip().endswith(
        "Every number the platform reported agrees with what was sent."
    )


def test_demo_unreachable_ingest_exits_1(tmp_path):
    result = _run(
        "--ingest-url",
        f"http://127.0.0.1:{free_port()}",
        "--api-url",
        f"http://127.0.0.1:{free_port()}",
        "--admin-key",
        "trk_000000000000_unused",
        "--data-dir",
        str(tmp_path),
        timeout=60,
    )
    assert result.returncode == 1
    assert "ingest at http://127.0.0.1:" in result.stderr
    assert "is unreachable" in result.stderr


def test_demo_missing_credentials_file(tmp_path):
    result = _run("--data-dir", str(tmp_path / "absent"), timeout=60)
    assert result.returncode == 1
    assert "demo-tenant.json not found" in result.stderr
    assert "--admin-key" in result.stderr


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("--conversion-rate", "1.5"),
        ("--bot-share", "-0.1"),
        ("--journeys", "0"),
        ("--tier", "lukewarm"),
    ],
)
def test_demo_rejects_bad_option(option, value, tmp_path):
    result = _run("--data-dir", str(tmp_path), option, value, timeout=60)
    assert result.returncode == 2
    assert option in result.stderr


def test_report_disagrees_on_any_mismatch():
    report = DemoReport(
        checks=[Check("t1", "clicks (clean)", 3, 3), Check("t1", "conversions", 1, 0)]
    )
    assert report.agrees is False
    assert report.as_dict()["checks"][1]["agrees"] is False


def test_report_disagrees_on_unexpected_answer():
    report = DemoReport(
        checks=[Check("t1", "clicks (clean)", 3, 3)], failures=["click: expected 307, got 503"]
    )
    assert report.agrees is False
