"""`tracker doctor` against healthy and broken configurations."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

from tests.conftest import free_port


def _doctor(data_dir: Path, **overrides: str) -> tuple[int, list[dict], str]:
    env = {k: v for k, v in os.environ.items() if k not in ("HOT_DSN", "BROKER", "ARCHIVE_URI")}
    env.update(
        {
            "TRACKER_DATA_DIR": str(data_dir),
            "TRACKER_ENV_FILE": str(data_dir / "missing.env"),
            "PORT": str(free_port()),
            "API_PORT": str(free_port()),
            "SSE_PORT": str(free_port()),
        }
    )
    env.update(overrides)
    done = subprocess.run(
        [sys.executable, "-m", "tracker.cli.main", "doctor", "--json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    return done.returncode, json.loads(done.stdout), done.stderr


def _by_check(findings: list[dict]) -> dict[str, dict]:
    return {finding["check"]: finding for finding in findings}


def test_doctor_passes_on_fresh_data_dir(data_dir: Path):
    code, findings, stderr = _doctor(data_dir)
    assert code == 0, stderr
    assert findings, "doctor returned no findings"
    assert all(f["status"] in ("ok", "warn") for f in findings), findings
    assert _by_check(findings)["broker"]["status"] == "ok"


def test_doctor_names_invalid_variable(data_dir: Path):
    code, findings, _ = _doctor(data_dir, BROKER="kafka", MAX_BATCH_SIZE="lots")
    assert code == 1
    broker = _by_check(findings)["config broker"]
    assert broker["status"] == "fail"
    assert "BROKER" in broker["detail"]
    assert "kafka" in broker["detail"]
    assert broker["fix"].startswith("set BROKER")


def test_doctor_reports_unreachable_hot_tier(data_dir: Path):
    closed_port = free_port()
    code, findings, _ = _doctor(
        data_dir, HOT_DSN=f"postgresql://postgres@127.0.0.1:{closed_port}/test"
    )
    assert code == 1
    hot = _by_check(findings)["hot tier"]
    assert hot["status"] == "fail"
    assert "HOT_DSN" in hot["fix"]


def test_doctor_reports_reachable_hot_tier(data_dir: Path, pg_dsn: str):
    code, findings, stderr = _doctor(data_dir, HOT_DSN=pg_dsn)
    assert code == 0, stderr
    assert "server" in _by_check(findings)["hot tier"]["detail"]


def test_doctor_reports_port_taken_by_other_program(data_dir: Path):
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        port = squatter.getsockname()[1]
        code, findings, _ = _doctor(data_dir, PORT=str(port))
    assert code == 1
    ingest = _by_check(findings)["port ingest"]
    assert ingest["status"] == "fail"
    assert "PORT" in ingest["fix"]


def test_doctor_reports_corrupt_registry(data_dir: Path):
    (data_dir / "registry.db").write_bytes(b"this is not a database" * 100)
    code, findings, _ = _doctor(data_dir)
    assert code == 1
    assert _by_check(findings)["registry"]["status"] == "fail"


def test_doctor_reports_unreachable_turso(data_dir: Path):
    closed_port = free_port()
    code, findings, stderr = _doctor(data_dir, TURSO_URL=f"http://127.0.0.1:{closed_port}")
    registry = _by_check(findings)["registry"]
    assert code == 1, stderr
    assert registry["status"] == "fail"
    assert f"127.0.0.1:{closed_port}" in registry["detail"]
    assert "TURSO_URL" in registry["fix"]


def test_doctor_reports_bad_turso_scheme(data_dir: Path):
    code, findings, stderr = _doctor(data_dir, TURSO_URL="ftp://127.0.0.1/db")
    registry = _by_check(findings)["registry"]
    assert code == 1, stderr
    assert registry["status"] == "fail"
    assert "expected a libsql://" in registry["detail"]
