"""Start real platform processes for end-to-end tests and read back what they stored.

Every process runs as a subprocess of the test, listens on 127.0.0.1 on a free port and
keeps its data under the test's own directory. Events are read straight from the local
log with `tracker._core.decode_record_batch`, so a test reads exactly what consumers read.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from tests.conftest import free_port
from tracker._core import decode_record_batch

PARTITIONS = 4
# Generous because a loaded 2-core machine can take over a minute to import the platform.
STARTUP_TIMEOUT_S = 120.0
STOP_TIMEOUT_S = 20.0


def tracker_command() -> list[str]:
    """Return the argv prefix that runs the `tracker` CLI of this environment."""
    script = Path(sys.executable).with_name("tracker")
    if script.exists():
        return [str(script)]
    found = shutil.which("tracker")
    if found is None:
        raise RuntimeError("the tracker command is not installed in this environment")
    return [found]


@dataclass
class LivePlatform:
    """A data directory, the environment every process shares, and the processes started."""

    data_dir: Path
    env: dict[str, str]
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    urls: dict[str, str] = field(default_factory=dict)
    tenants: dict[str, dict[str, Any]] = field(default_factory=dict)
    partitions: int = PARTITIONS

    def cli(self, *args: str, timeout: float = 60.0) -> str:
        """Run `tracker ARGS...` with the platform's environment and return its stdout."""
        done = subprocess.run(
            [*tracker_command(), *args],
            env=self.env,
            cwd=self.data_dir,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if done.returncode != 0:
            raise AssertionError(
                f"tracker {' '.join(args)} failed ({done.returncode}): {done.stderr}"
            )
        return done.stdout

    def create_tenant(self, key_prefix: str, plan: str = "free") -> dict[str, Any]:
        """Create a tenant through the CLI; return its key prefix, hex secret and AES key."""
        created = json.loads(
            self.cli("tenants", "create", "--key-prefix", key_prefix, "--plan", plan, "--json")
        )
        self.tenants[key_prefix] = created
        return created

    def create_api_key(self, key_prefix: str, scope: str = "read") -> str:
        """Create an API key for the tenant through the CLI and return its raw text."""
        return json.loads(self.cli("keys", "create", "--tenant", key_prefix, "--scope", scope))[
            "api_key"
        ]

    def start(
        self,
        name: str,
        *args: str,
        port_variable: str = "PORT",
        extra_env: dict[str, str] | None = None,
        health_path: str | None = "/health",
    ) -> str:
        """Start `tracker ARGS...` as process `name`, wait until its health check passes, and return its URL."""
        port = free_port()
        env = {**self.env, port_variable: str(port), **(extra_env or {})}
        log = (self.data_dir / f"{name}.log").open("wb")
        process = subprocess.Popen(
            [*tracker_command(), *args],
            env=env,
            cwd=self.data_dir,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        self.processes[name] = process
        url = f"http://127.0.0.1:{port}"
        self.urls[name] = url
        if health_path is not None:
            self._wait_healthy(name, url + health_path)
        return url

    def log_text(self, name: str) -> str:
        path = self.data_dir / f"{name}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def _wait_healthy(self, name: str, url: str) -> None:
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.processes[name].poll() is not None:
                raise AssertionError(f"{name} exited at start-up:\n{self.log_text(name)[-3000:]}")
            try:
                if httpx.get(url, timeout=1.0).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        raise AssertionError(
            f"{name} did not become healthy in {STARTUP_TIMEOUT_S} s:\n"
            f"{self.log_text(name)[-3000:]}"
        )

    def stored_events(self) -> list[dict[str, Any]]:
        """Return every event in the local log's `events` topic, oldest first per partition."""
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return asyncio.run(_read_log(self.data_dir, self.partitions))
        # Called from an async test: read on a helper thread with its own event loop.
        with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
            return pool.submit(asyncio.run, _read_log(self.data_dir, self.partitions)).result()

    def wait_for_events(
        self, predicate, count: int = 1, timeout: float = 15.0
    ) -> list[dict[str, Any]]:
        """Poll the log until at least `count` events satisfy `predicate`; return those events."""
        deadline = time.monotonic() + timeout
        matching: list[dict[str, Any]] = []
        while time.monotonic() < deadline:
            matching = [event for event in self.stored_events() if predicate(event)]
            if len(matching) >= count:
                return matching
            time.sleep(0.1)
        raise AssertionError(f"expected {count} matching events in the log, found {len(matching)}")

    def stop(self) -> None:
        for process in self.processes.values():
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in self.processes.values():
            try:
                process.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


async def _read_log(data_dir: Path, partitions: int) -> list[dict[str, Any]]:
    from tracker.broker import BrokerSettings, open_broker
    from tracker.broker.base import TOPIC_EVENTS

    broker = open_broker(
        BrokerSettings(data_dir=data_dir, partitions=partitions, retention_interval_seconds=0.0)
    )
    await broker.connect()
    try:
        events = []
        for partition in range(partitions):
            start = 0
            while True:
                messages = await broker.read(TOPIC_EVENTS, partition, start, 500)
                if not messages:
                    break
                for message in messages:
                    events.extend(json.loads(doc) for doc in decode_record_batch(message.payload))
                start = messages[-1].offset + 1
        return events
    finally:
        await broker.close()


@contextmanager
def live_platform(data_dir: Path, **extra_env: str) -> Iterator[LivePlatform]:
    """Yield a LivePlatform on `data_dir`; every process it started is stopped afterwards."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("PYTEST_")}
    env.update(
        {
            "TRACKER_DATA_DIR": str(data_dir),
            "HOST": "127.0.0.1",
            "BROKER": "local",
            "BROKER_PARTITIONS": str(PARTITIONS),
            "LOCAL_LOG_SYNC": "normal",
            "LOG_FORMAT": "text",
            "REGISTRY_REFRESH_SECONDS": "0.2",
            **extra_env,
        }
    )
    platform = LivePlatform(data_dir=data_dir, env=env)
    try:
        yield platform
    finally:
        platform.stop()
