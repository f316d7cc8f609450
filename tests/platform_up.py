"""`tracker up` as a test fixture: start it on free ports, wait for every component, stop it.

The platform tests, the dashboard tests and the MCP tests each run one platform this way.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.conftest import free_port

COMPONENTS = 9
START_TIMEOUT_SECONDS = 90
# Fast commits and registry refreshes, so a test finds its events within seconds.
QUICK_ENV = {"ARCHIVE_COMMIT_SECONDS": "1", "REGISTRY_REFRESH_SECONDS": "1"}


def wait_until(predicate: Callable[[], Any], timeout: float, condition: str) -> Any:
    """Poll `predicate` every 0.3 s until it returns a truthy value, and return that value.

    Fail the test naming `condition` and the last value after `timeout` seconds.
    """
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(0.3)
    raise AssertionError(
        f"timed out after {timeout} s waiting for {condition}; last value {last!r}"
    )


@dataclass
class RunningUp:
    """A `tracker up` process, its ports, the demo tenant and the status lines read so far."""

    process: subprocess.Popen[str]
    ports: dict[str, int]
    demo: dict[str, Any]
    statuses: list[dict[str, Any]] = field(default_factory=list)

    @property
    def ingest_url(self) -> str:
        return f"http://127.0.0.1:{self.ports['ingest']}"

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.ports['api']}"

    @property
    def sse_url(self) -> str:
        return f"http://127.0.0.1:{self.ports['sse']}"

    def stop(self, timeout: float = 60) -> None:
        """Send SIGTERM and wait, then kill the process if it outlives `timeout` seconds."""
        if self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def _wait_until_ready(running: RunningUp) -> None:
    ready: set[str] = set()
    deadline = time.monotonic() + START_TIMEOUT_SECONDS
    while time.monotonic() < deadline and len(ready) < COMPONENTS:
        line = running.process.stdout.readline() if running.process.stdout else ""
        if not line:
            break
        record = json.loads(line)
        running.statuses.append(record)
        if "demo_tenant" in record:
            running.demo = record["demo_tenant"]
        elif record.get("state") == "running":
            ready.add(record["name"])
    assert running.demo, "tracker up printed no demo tenant"
    assert len(ready) == COMPONENTS, f"only these components became ready: {sorted(ready)}"


@contextmanager
def run_up(
    data_dir: Path | str,
    *,
    env: dict[str, str] | None = None,
    unset: tuple[str, ...] = (),
    cwd: Path | None = None,
    stderr: int | None = subprocess.DEVNULL,
) -> Iterator[RunningUp]:
    """Run `tracker up --json` on free ports until the block ends, without the hot tier.

    `env` is added to the test's environment after QUICK_ENV, and the variables named in
    `unset` are removed from it. `stderr=subprocess.PIPE` keeps the platform's log for a
    test that reads it.
    """
    ports = {"ingest": free_port(), "api": free_port(), "sse": free_port()}
    environment = dict(os.environ)
    for name in ("HOT_DSN", *unset):
        environment.pop(name, None)
    environment.update(QUICK_ENV)
    environment.update(env or {})
    command = [sys.executable, "-m", "tracker.cli.main", "up", "--data-dir", str(data_dir)]
    for option, name in (("--port", "ingest"), ("--api-port", "api"), ("--sse-port", "sse")):
        command += [option, str(ports[name])]
    process = subprocess.Popen(
        [*command, "--json"],
        cwd=cwd,
        env=environment,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=stderr,
        text=True,
    )
    running = RunningUp(process, ports, demo={})
    try:
        _wait_until_ready(running)
        yield running
    finally:
        running.stop()
