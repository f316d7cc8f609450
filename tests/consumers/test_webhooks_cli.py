"""`tracker webhooks` commands run as real subprocesses on a temporary registry."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import orjson
import pytest

from tracker.registry.db import Registry

REPO = Path(__file__).resolve().parents[2]


def run_cli(data_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "TRACKER_DATA_DIR": str(data_dir),
        "TRACKER_ENV_FILE": str(data_dir / "absent.env"),
        "WEBHOOK_ALLOWED_CIDRS": "",
    }
    return subprocess.run(
        [sys.executable, "-c", "from tracker.cli.main import main; main()", "webhooks", *args],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.fixture
def tenant_dir(data_dir: Path) -> Path:
    registry = Registry(data_dir / "registry.db")
    registry.connection().execute(
        "INSERT INTO tenants (key_prefix, created_at, updated_at) VALUES ('acme', 0, 0)"
    )
    registry.close()
    return data_dir


def test_cli_create_list_delete(tenant_dir: Path) -> None:
    created = run_cli(
        tenant_dir,
        "create",
        "--tenant",
        "acme",
        "--url",
        "https://hooks.example.com/in",
        "--event-type",
        "click",
        "--param",
        "sub1=google",
    )
    assert created.returncode == 0, created.stderr
    endpoint = orjson.loads(created.stdout)
    assert endpoint["secret"].startswith("whsec_")
    assert endpoint["event_types"] == ["click"]
    assert endpoint["param_filters"] == {"sub1": "google"}

    listed = orjson.loads(run_cli(tenant_dir, "list", "--tenant", "acme").stdout)
    assert [item["endpoint_id"] for item in listed] == [endpoint["endpoint_id"]]
    assert "secret" not in listed[0]

    deleted = run_cli(tenant_dir, "delete", endpoint["endpoint_id"])
    assert deleted.returncode == 0
    assert orjson.loads(run_cli(tenant_dir, "list").stdout) == []


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("create", "--tenant", "acme", "--url", "http://169.254.169.254/"), "metadata"),
        (
            ("create", "--tenant", "acme", "--url", "https://a.example/", "--param", "novalue"),
            "KEY=VALUE",
        ),
        (("create", "--tenant", "nobody", "--url", "https://a.example/"), "not found"),
        (("replay", "dlv_missing"), "not found"),
        (("deliveries", "--status", "lost"), "status"),
    ],
)
def test_cli_reports_errors(tenant_dir: Path, args: tuple[str, ...], message: str) -> None:
    result = run_cli(tenant_dir, *args)

    assert result.returncode != 0
    assert message in result.stderr
    assert "Traceback" not in result.stderr
