"""A real Apache Iggy server for live tests, started from the binary at IGGY_SERVER_BIN.

Each server listens on 127.0.0.1 only: TCP on a free port, with HTTP, QUIC and
WebSocket switched off. Its data directory belongs to the test, so a stopped
server restarts on the same data.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.conftest import free_port

SERVER_BIN_VARIABLE = "IGGY_SERVER_BIN"
ROOT_USERNAME = "iggy"
ROOT_PASSWORD = "iggy"


def server_binary() -> str | None:
    """Return the path in IGGY_SERVER_BIN, or None when it is unset."""
    return os.environ.get(SERVER_BIN_VARIABLE) or None


@dataclass
class IggyServer:
    """One iggy-server process on a fixed loopback port and data directory."""

    binary: str
    data_dir: Path
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def log_path(self) -> Path:
        return self.data_dir.parent / "iggy-server.log"

    def environment(self) -> dict[str, str]:
        """Return the server's environment: loopback TCP only, data under `data_dir`."""
        env = {key: value for key, value in os.environ.items() if not key.startswith("IGGY_")}
        env.update(
            {
                "IGGY_ROOT_USERNAME": ROOT_USERNAME,
                "IGGY_ROOT_PASSWORD": ROOT_PASSWORD,
                "IGGY_TCP_ADDRESS": self.url,
                "IGGY_HTTP_ENABLED": "false",
                "IGGY_QUIC_ENABLED": "false",
                "IGGY_WEBSOCKET_ENABLED": "false",
                "IGGY_CLUSTER_ENABLED": "false",
                "IGGY_SYSTEM_PATH": str(self.data_dir),
                "IGGY_SYSTEM_SHARDING_CPU_ALLOCATION": "1",
                "IGGY_SYSTEM_SHARDING_PIN_CORES": "false",
                "IGGY_SYSTEM_MEMORY_POOL_ENABLED": "false",
            }
        )
        return env

    def start(self, timeout: float = 30.0) -> None:
        """Start the server and wait until its TCP port accepts connections."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log_file:
            self.process = subprocess.Popen(
                [self.binary],
                env=self.environment(),
                cwd=self.data_dir.parent,
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"iggy-server exited with {self.process.returncode}:\n{self.log_tail()}"
                )
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return
            except OSError:
                time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"iggy-server did not listen within {timeout} s:\n{self.log_tail()}")

    def stop(self, stop_signal: signal.Signals = signal.SIGTERM) -> None:
        """Stop the server with `stop_signal`, then with SIGKILL if it still runs after 20 s."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(stop_signal)
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def log_tail(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-3000:]
        except FileNotFoundError:
            return "(no log)"


def live_server_or_skip(tmp_path: Path) -> IggyServer:
    """Return a started server of our own, or skip the test when IGGY_SERVER_BIN is unset."""
    binary = server_binary()
    if binary is None:
        pytest.skip(f"needs an iggy-server binary at {SERVER_BIN_VARIABLE}")
    server = IggyServer(binary, tmp_path / "iggy-data")
    server.start()
    return server


def live_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Yield the address of a live Iggy server: IGGY_URL, else one started from IGGY_SERVER_BIN."""
    url = os.environ.get("IGGY_URL")
    if url:
        yield url
        return
    server = live_server_or_skip(tmp_path_factory.mktemp("iggy"))
    yield server.url
    server.stop()
