"""Tests of the `tracker api` process: start-up errors, SIGTERM, health, request logs and the keys CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.api.conftest import ADMIN_KEY, ApiServer, assert_error, create_tenant

CLI = [sys.executable, "-c", "from tracker.cli.main import main; main()"]


def _run_cli(
    args: list[str], env: dict[str, str], timeout: float = 30
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CLI, *args],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )


def test_port_in_use_fails_without_prompt(api_server: ApiServer, tmp_path: Path) -> None:
    env = {
        "TRACKER_DATA_DIR": str(tmp_path),
        "API_PORT": str(api_server.port),
        "TRACKER_ENV_FILE": str(tmp_path / "none"),
    }

    done = _run_cli(["api"], env)

    assert done.returncode == 1
    assert "API_PORT" in done.stderr
    assert "already in use" in done.stderr
    assert "Enter a different port" not in done.stdout + done.stderr


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("API_PORT", "abc"),
        ("API_PORT", "70000"),
        ("ADMIN_API_KEY", "short"),
        ("API_MAX_BODY_BYTES", "-1"),
    ],
)
def test_bad_setting_names_variable(tmp_path: Path, variable: str, value: str) -> None:
    env = {
        "TRACKER_DATA_DIR": str(tmp_path),
        "TRACKER_ENV_FILE": str(tmp_path / "none"),
        variable: value,
    }

    done = _run_cli(["api"], env)

    assert done.returncode == 1
    assert done.stderr.startswith(f"error: {variable}:")


def test_sigterm_exits_zero(tmp_path: Path) -> None:
    server = ApiServer(tmp_path).start()

    assert server.stop() == 0


def test_health_reports_each_tier(api_server: ApiServer) -> None:
    answer = httpx.get(f"{api_server.base_url}/api/health")

    assert answer.status_code == 200
    body = answer.json()
    assert body["status"] == "ok"
    assert body["registry"] == "ok"
    assert body["tiers"]["hot"] == {"state": "not_configured"}
    assert body["tiers"]["warm"]["state"] == "ok"
    assert body["tiers"]["cold"]["state"] == "ok"


def test_request_log_is_structured_without_secrets(api_server: ApiServer) -> None:
    keys = create_tenant(api_server, "srvlog")
    with api_server.client(keys.read_key) as reader:
        assert reader.get("/api/keys").status_code == 200

    lines = [json.loads(line) for line in api_server.log().splitlines() if line.startswith("{")]
    served = [
        line
        for line in lines
        if line.get("message") == "Request served." and line.get("tenant") == "srvlog"
    ]
    assert served, api_server.log()
    assert served[-1]["route"] == "/api/keys"
    assert served[-1]["status"] == 200
    assert served[-1]["duration_ms"] >= 0
    assert keys.read_key not in api_server.log()
    assert ADMIN_KEY not in api_server.log()


@pytest.mark.parametrize(
    "authorization",
    [
        "",
        "Bearer",
        "Basic dXNlcjpwdw==",
        "Bearer trk_short",
        "Bearer " + "x" * 10_000,
        "Bearer trk_000000000000_" + "A" * 43,
    ],
)
def test_bad_authorization_is_401(api_server: ApiServer, authorization: str) -> None:
    headers = {"Authorization": authorization} if authorization else {}
    answer = httpx.get(f"{api_server.base_url}/api/keys", headers=headers)

    assert_error(answer, 401, "unauthorized", "authorization")


def test_scopes_are_enforced(api_server: ApiServer) -> None:
    keys = create_tenant(api_server, "srvscope")
    with api_server.client(keys.read_key) as reader:
        assert_error(
            reader.post("/api/tracking-urls", json={"destination": "https://a.example/"}),
            403,
            "forbidden",
        )
        assert_error(
            reader.post("/api/webhooks", json={"url": "https://a.example/"}), 403, "forbidden"
        )
        assert_error(reader.delete(f"/api/keys/{keys.created['key']['key_id']}"), 403, "forbidden")
        assert_error(reader.get("/api/tenants"), 403, "forbidden")
    with api_server.client(keys.write_key) as writer:
        assert_error(writer.get("/api/tenants"), 403, "forbidden")
        assert_error(writer.post("/api/tenants", json={}), 403, "forbidden")


def test_keys_cli_creates_working_admin_key(api_server: ApiServer) -> None:
    env = {
        "TRACKER_DATA_DIR": str(api_server.data_dir),
        "TRACKER_ENV_FILE": str(api_server.data_dir / "none"),
    }

    created = _run_cli(["keys", "create", "--admin", "--name", "ops"], env)
    raw_key = json.loads(created.stdout)["api_key"]
    key_id = json.loads(created.stdout)["key_id"]
    with api_server.client(raw_key) as admin:
        listed = admin.get("/api/tenants")
    revoked = _run_cli(["keys", "revoke", key_id], env)
    listing = _run_cli(["keys", "list"], env)

    assert created.returncode == 0, created.stderr
    assert listed.status_code == 200
    assert revoked.returncode == 0, revoked.stderr
    assert raw_key not in listing.stdout
    assert any(
        json.loads(line)["key_id"] == key_id and json.loads(line)["revoked_at"]
        for line in listing.stdout.splitlines()
    )


def test_keys_cli_rejects_bad_arguments(api_server: ApiServer) -> None:
    env = {
        "TRACKER_DATA_DIR": str(api_server.data_dir),
        "TRACKER_ENV_FILE": str(api_server.data_dir / "none"),
    }

    both = _run_cli(["keys", "create", "--admin", "--tenant", "x"], env)
    unknown = _run_cli(["keys", "create", "--tenant", "nosuchtenant"], env)
    bad_scope = _run_cli(["keys", "create", "--tenant", "x", "--scope", "owner"], env)
    missing = _run_cli(["keys", "revoke", "000000000000"], env)

    assert both.returncode == 2
    assert unknown.returncode == 1
    assert "not found" in unknown.stderr
    assert bad_scope.returncode == 2
    assert missing.returncode == 1
    assert "not found" in missing.stderr


@pytest.mark.parametrize("path", ["/", "/api", "/api/nothing", "/api/tenants/acme/extra/deep"])
def test_unknown_path_is_json_404(api_server: ApiServer, path: str) -> None:
    with api_server.client() as client:
        answer = client.get(path)

    assert_error(answer, 404, "not_found", "path")


def test_wrong_method_is_405(api_server: ApiServer) -> None:
    with api_server.client() as client:
        answer = client.put("/api/tenants", json={})

    error = assert_error(answer, 405, "method_not_allowed", "method")
    assert answer.headers["allow"] == "GET, POST"
    assert "PUT" in error["message"]


def test_dashboard_paths_count_as_known(api_server: ApiServer) -> None:
    with api_server.client() as client:
        answer = client.post("/dashboard/app.js")

    assert_error(answer, 405, "method_not_allowed", "method")
    assert answer.headers["allow"] == "GET"
