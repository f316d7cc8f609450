"""Fixtures for the ingest tests: a real `tracker serve` subprocess, its registry and its log."""

from __future__ import annotations

import asyncio
import http.client
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import orjson
import pytest

from tests.conftest import free_port
from tracker._core import decode_record_batch
from tracker.broker.base import TOPIC_EVENTS
from tracker.broker.local import LocalBroker
from tracker.broker.settings import BrokerSettings
from tracker.registry.db import Registry
from tracker.registry.tenants import create_tenant, disable_tenant

GLOBAL_HMAC_SECRET = "global-test-secret"
GLOBAL_AES_KEY = bytes(range(32))
PARTITIONS = 4
MAX_BODY_BYTES = 4 * 1024 * 1024
SERVE_COMMAND = [sys.executable, "-c", "from tracker.cli.main import main; main()", "serve"]


@dataclass
class Reply:
    """One HTTP response as the tests need it: status, lower-cased headers, body."""

    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> object:
        return orjson.loads(self.body)


@dataclass
class IngestServer:
    """A running `tracker serve` with its data directory and the secrets of its tenants."""

    host: str
    port: int
    data_dir: Path
    process: subprocess.Popen[bytes]
    registry: Registry
    secrets: dict[str, bytes] = field(default_factory=dict)
    aes_keys: dict[str, bytes] = field(default_factory=dict)

    def request(
        self,
        method: str,
        target: str,
        *,
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
        timeout: float = 10.0,
    ) -> Reply:
        """Send `target` exactly as given (no re-encoding), so malformed URLs reach the server."""
        connection = http.client.HTTPConnection(self.host, self.port, timeout=timeout)
        try:
            connection.putrequest(method, target, skip_accept_encoding=True)
            for name, value in (headers or {}).items():
                connection.putheader(name, value)
            if body is not None:
                connection.putheader("Content-Length", str(len(body)))
            connection.endheaders(body)
            response = connection.getresponse()
            return Reply(
                response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
            )
        finally:
            connection.close()

    def get(self, target: str, **options: object) -> Reply:
        return self.request("GET", target, **options)

    def post(
        self, target: str, body: bytes, content_type: str = "application/json", **options: object
    ) -> Reply:
        headers = {"Content-Type": content_type, **options.pop("headers", {})}  # type: ignore[dict-item]
        return self.request("POST", target, body=body, headers=headers, **options)

    def events(self) -> dict[str, dict]:
        """Return every event in the local log by event id."""
        return read_local_log(self.data_dir)

    def wait_refresh(self, timeout: float = 15.0) -> None:
        """Wait until the server finished two registry refreshes after this call.

        The first one may have read the registry before the caller's change.
        """
        start = self.get("/health").json()["registry_refreshes"]
        deadline = time.monotonic() + timeout
        while self.get("/health").json()["registry_refreshes"] < start + 2:
            if time.monotonic() > deadline:
                raise TimeoutError(f"the registry cache did not refresh within {timeout} s")
            time.sleep(REFRESH_SECONDS / 4)


REFRESH_SECONDS = 0.2


def read_local_log(data_dir: Path, partitions: int = PARTITIONS) -> dict[str, dict]:
    """Decode every record batch of the `events` topic in the local log under `data_dir`."""

    async def read_all() -> dict[str, dict]:
        broker = LocalBroker(
            BrokerSettings(data_dir=data_dir, partitions=partitions, retention_interval_seconds=0)
        )
        await broker.connect()
        events: dict[str, dict] = {}
        try:
            for partition in range(partitions):
                offset = 0
                while True:
                    messages = await broker.read(TOPIC_EVENTS, partition, offset, 500)
                    if not messages:
                        break
                    for message in messages:
                        for document in decode_record_batch(message.payload):
                            event = orjson.loads(document)
                            events[event["event_id"]] = event
                    offset = messages[-1].offset + 1
        finally:
            await broker.close()
        return events

    return asyncio.run(read_all())


def server_env(data_dir: Path, port: int, **overrides: str) -> dict[str, str]:
    """Environment of a test server: private data dir, fast refresh, no `.env` file."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(
            ("TRACKER_", "URL_MODE", "HMAC_", "ENCRYPTION_", "BROKER", "IGGY_", "PROMETHEUS_")
        )
    }
    env.update(
        {
            "TRACKER_ENV_FILE": str(data_dir / "no.env"),
            "TRACKER_DATA_DIR": str(data_dir),
            "PORT": str(port),
            "HOST": "127.0.0.1",
            "BROKER": "local",
            "BROKER_PARTITIONS": str(PARTITIONS),
            "LOCAL_LOG_SYNC": "normal",
            "REGISTRY_REFRESH_SECONDS": str(REFRESH_SECONDS),
            "HMAC_SECRET": GLOBAL_HMAC_SECRET,
            "TRUSTED_PROXIES": "127.0.0.1/32",
            "LOG_FORMAT": "text",
            "INGEST_DRAIN_SECONDS": "5",
            "MAX_BODY_BYTES": str(MAX_BODY_BYTES),
        }
    )
    env.update(overrides)
    return env


def start_server(env: dict[str, str], log_path: Path) -> subprocess.Popen[bytes]:
    with open(log_path, "ab") as log_file:
        return subprocess.Popen(
            SERVE_COMMAND,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            cwd=env["TRACKER_DATA_DIR"],
        )


def wait_healthy(
    host: str, port: int, process: subprocess.Popen[bytes], log_path: Path, timeout: float = 30.0
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(
                f"tracker serve exited with {process.returncode}:\n{log_path.read_text()[-3000:]}"
            )
        try:
            connection = http.client.HTTPConnection(host, port, timeout=1)
            connection.request("GET", "/health")
            if connection.getresponse().status == 200:
                return
        except OSError:
            pass
        finally:
            connection.close()
        time.sleep(0.1)
    raise RuntimeError(f"tracker serve did not become healthy:\n{log_path.read_text()[-3000:]}")


def stop_server(process: subprocess.Popen[bytes]) -> int:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
    try:
        return process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
        return process.wait()


def launch(data_dir: Path, *, host: str = "127.0.0.1", **overrides: str) -> IngestServer:
    """Create the test tenants, start `tracker serve` and wait until /health returns 200."""
    data_dir.mkdir(parents=True, exist_ok=True)
    registry = Registry(data_dir / "registry.db")
    server_secrets: dict[str, bytes] = {}
    aes_keys: dict[str, bytes] = {}
    for prefix in ("acme", "beta", "gone"):
        created = create_tenant(registry, key_prefix=prefix)
        server_secrets[prefix] = created.hmac_secret
        aes_keys[prefix] = created.aes_key
    disable_tenant(registry, "gone")

    port = free_port()
    env = server_env(data_dir, port, HOST=host, **overrides)
    log_path = data_dir / "serve.log"
    process = start_server(env, log_path)
    wait_healthy(host, port, process, log_path)
    return IngestServer(
        host=host,
        port=port,
        data_dir=data_dir,
        process=process,
        registry=registry,
        secrets=server_secrets,
        aes_keys=aes_keys,
    )


def fire_postbacks(
    server: IngestServer,
    stop: threading.Event,
    accepted: list[str],
    failures: list[str],
    tenants: tuple[str, ...] = ("acme",),
    timeout: float = 5.0,
) -> None:
    """Send /p for `tenants` in turn until `stop` is set, recording the event id of every 2xx."""
    number = 0
    while not stop.is_set():
        tenant = tenants[number % len(tenants)]
        number += 1
        try:
            reply = server.get(f"/p?key_prefix={tenant}&n={number}", timeout=timeout)
        except OSError as error:
            failures.append(type(error).__name__)
            continue
        if 200 <= reply.status < 300:
            accepted.append(reply.json()["event_id"])
        else:
            failures.append(f"{reply.status} {reply.body[:200]!r}")


@pytest.fixture(scope="session")
def ingest(tmp_path_factory: pytest.TempPathFactory) -> Iterator[IngestServer]:
    """One `tracker serve` shared by the HTTP tests: signed mode, global secret, 127.0.0.1 trusted."""
    server = launch(tmp_path_factory.mktemp("ingest") / "data")
    yield server
    stop_server(server.process)
    server.registry.close()
