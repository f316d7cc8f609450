"""Fixtures of the API tests: a real `tracker api` subprocess on a free port, and tenant helpers."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import free_port

ADMIN_KEY = "admin-key-used-only-by-the-api-tests-0123456789"
START_TIMEOUT_SECONDS = 60.0


class ApiServer:
    """A `tracker api` process started with its own data directory and environment."""

    def __init__(self, data_dir: Path, extra_env: dict[str, str] | None = None) -> None:
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.data_dir = data_dir
        self.log_path = data_dir / "api.log"
        self.env = {
            **os.environ,
            "TRACKER_DATA_DIR": str(data_dir),
            "API_HOST": "127.0.0.1",
            "API_PORT": str(self.port),
            "ADMIN_API_KEY": ADMIN_KEY,
            "TRACKER_ENV_FILE": str(data_dir / "no.env"),
            **(extra_env or {}),
        }
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> ApiServer:
        self._log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            [sys.executable, "-c", "from tracker.cli.main import main; main()", "api"],
            env=self.env,
            stdout=self._log,
            stderr=self._log,
            stdin=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"tracker api exited with {self.process.returncode}:\n{self.log()}"
                )
            try:
                if httpx.get(f"{self.base_url}/api/health", timeout=1.0).status_code in (200, 503):
                    return self
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(
            f"tracker api did not answer within {START_TIMEOUT_SECONDS}s:\n{self.log()}"
        )

    def stop(self) -> int | None:
        if self.process is None:
            return None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._log.close()
        return self.process.returncode

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:]

    def client(self, api_key: str | None = ADMIN_KEY) -> httpx.Client:
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        return httpx.Client(base_url=self.base_url, headers=headers, timeout=30.0)


@dataclass
class TenantKeys:
    """A tenant created through the API and a key of each tenant scope."""

    key_prefix: str
    write_key: str
    read_key: str
    created: dict[str, Any]


def create_tenant(server: ApiServer, key_prefix: str, plan: str = "free") -> TenantKeys:
    """Create a tenant through the admin API and add a read key."""
    with server.client() as admin:
        answer = admin.post("/api/tenants", json={"key_prefix": key_prefix, "plan": plan})
        assert answer.status_code == 201, answer.text
        created = answer.json()
        read = admin.post(
            f"/api/tenants/{key_prefix}/keys", json={"scope": "read", "name": "reader"}
        )
        assert read.status_code == 201, read.text
    return TenantKeys(key_prefix, created["api_key"], read.json()["api_key"], created)


def assert_error(
    answer: httpx.Response, status: int, code: str, field: str | None = None
) -> dict[str, Any]:
    """Assert a JSON error response with this status and code (and field, when given)."""
    assert answer.status_code == status, answer.text
    assert answer.headers["content-type"].startswith("application/json")
    error = answer.json()["error"]
    assert error["code"] == code, error
    if field is not None:
        assert error["field"] == field, error
    assert error["message"]
    return error


@pytest.fixture(scope="module")
def api_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ApiServer]:
    """A running API over an empty registry and empty warm and cold tiers; no hot tier."""
    server = ApiServer(tmp_path_factory.mktemp("api")).start()
    yield server
    server.stop()
