"""`tracker demo` against a `tracker up` started here: the report agrees with what was sent,
and bad input ends with a clear message and a non-zero exit code."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator

import pytest

from tests.conftest import free_port
from tests.platform_up import run_up
from tracker.demo.report import Check, DemoReport

DEMO = [sys.executable, "-m", "tracker.cli.main", "demo"]


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    """One `tracker up` for the module, trusting 127.0.0.1 as a proxy so each visitor keeps its address."""
    data_dir = tmp_path_factory.mktemp("demo") / "data"
    with run_up(data_dir, env={"TRUSTED_PROXIES": "127.0.0.1/32"}) as running:
        yield {"data_dir": data_dir, "ingest": running.ingest_url, "api": running.api_url}


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
