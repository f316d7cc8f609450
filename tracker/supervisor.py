"""Supervision of the platform's processes for `tracker up`.

Each component is a `tracker` subcommand run as a child process in its own session, so a
Ctrl-C at the terminal reaches only the supervisor. The supervisor then stops the children
in order: ingest first, because it drains its producer into the durable log, then the API,
the SSE gateway and the consumers, each of which finishes the batch in hand and commits.
A child that exits on its own is restarted with exponential backoff. On Linux each child
also gets SIGTERM if the supervisor dies abruptly.
"""

from __future__ import annotations

import ctypes
import logging
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from tracker.errors import ConfigError

__all__ = ["Component", "ComponentState", "Supervisor", "check_ports_free"]

log = logging.getLogger(__name__)

_PR_SET_PDEATHSIG = 1
BACKOFF_INITIAL_SECONDS = 1.0
BACKOFF_MAX_SECONDS = 30.0
# A child that stayed up this long is considered healthy again: its backoff resets.
STABLE_AFTER_SECONDS = 30.0


def _die_with_parent() -> None:
    """Ask the kernel to send SIGTERM to this child when the supervisor dies (Linux only)."""
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    except OSError:
        pass


@dataclass(frozen=True)
class Component:
    """One supervised process: a `tracker` subcommand and how to tell it is ready."""

    name: str
    args: tuple[str, ...]
    port: int | None = None
    health_path: str | None = None
    # Lower numbers stop first; ingest stops before the consumers that read what it wrote.
    stop_order: int = 50


@dataclass
class ComponentState:
    """State of one component as the supervisor last observed it."""

    component: Component
    process: subprocess.Popen[bytes] | None = None
    state: str = "stopped"
    restarts: int = 0
    started_at: float = 0.0
    next_start_at: float = 0.0
    backoff: float = BACKOFF_INITIAL_SECONDS
    last_exit_code: int | None = None
    log_path: Path | None = None

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None else None

    def as_dict(self) -> dict[str, object]:
        return {
            "name": self.component.name,
            "pid": self.pid,
            "port": self.component.port,
            "state": self.state,
            "restarts": self.restarts,
            "last_exit_code": self.last_exit_code,
            "log": str(self.log_path) if self.log_path else None,
        }


class Supervisor:
    """Start, watch, restart and stop a set of components."""

    def __init__(
        self,
        components: Sequence[Component],
        *,
        env: Mapping[str, str],
        log_dir: Path,
        report: Callable[[ComponentState, str], None] | None = None,
        stop_timeout: float = 30.0,
    ) -> None:
        self.states = {c.name: ComponentState(c) for c in components}
        self.env = dict(env)
        self.log_dir = log_dir
        self.report = report or (lambda state, message: None)
        self.stop_timeout = stop_timeout
        self._stopping = False

    def _spawn(self, state: ComponentState) -> None:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        state.log_path = self.log_dir / f"{state.component.name}.log"
        # Appending keeps the log of a crashed run next to the one that replaced it.
        with open(state.log_path, "ab") as log_file:
            state.process = subprocess.Popen(
                [sys.executable, "-m", "tracker.cli.main", *state.component.args],
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=_die_with_parent if sys.platform.startswith("linux") else None,
            )
        state.started_at = time.monotonic()
        state.state = "starting"
        self.report(state, "started")

    def _is_ready(self, state: ComponentState) -> bool:
        component = state.component
        if state.process is None or state.process.poll() is not None:
            return False
        if component.port is None or component.health_path is None:
            # A consumer has no HTTP endpoint: alive for a second counts as started.
            return time.monotonic() - state.started_at > 1.0
        url = f"http://127.0.0.1:{component.port}{component.health_path}"
        try:
            with urllib.request.urlopen(url, timeout=1.0) as response:
                return 200 <= response.status < 300
        except (urllib.error.URLError, OSError, ValueError):
            return False

    def start(self, *, ready_timeout: float = 60.0) -> bool:
        """Start every component and wait until each is ready; return whether all are."""
        for state in self.states.values():
            self._spawn(state)
        deadline = time.monotonic() + ready_timeout
        pending = set(self.states)
        while pending and time.monotonic() < deadline:
            for name in sorted(pending):
                state = self.states[name]
                if state.process is not None and state.process.poll() is not None:
                    state.state = "failed"
                    state.last_exit_code = state.process.returncode
                    self.report(state, "exited during start-up")
                    pending.discard(name)
                elif self._is_ready(state):
                    state.state = "running"
                    self.report(state, "ready")
                    pending.discard(name)
            time.sleep(0.2)
        for name in pending:
            self.states[name].state = "unready"
            self.report(self.states[name], "not ready before the start-up timeout")
        return all(s.state == "running" for s in self.states.values())

    def check(self) -> None:
        """Restart children that exited, with exponential backoff; call this periodically."""
        now = time.monotonic()
        for state in self.states.values():
            process = state.process
            if process is not None and process.poll() is None:
                if state.state in ("starting", "unready") and self._is_ready(state):
                    state.state = "running"
                    self.report(state, "ready")
                if now - state.started_at > STABLE_AFTER_SECONDS:
                    state.backoff = BACKOFF_INITIAL_SECONDS
                continue
            if self._stopping:
                continue
            if process is not None and state.state != "backoff":
                state.last_exit_code = process.returncode
                state.state = "backoff"
                state.next_start_at = now + state.backoff
                self.report(
                    state,
                    f"exited with code {process.returncode}; restarting in {state.backoff:.0f} s",
                )
                state.backoff = min(state.backoff * 2, BACKOFF_MAX_SECONDS)
            elif state.state in ("backoff", "failed") and now >= state.next_start_at:
                state.restarts += 1
                self._spawn(state)

    def stop(self) -> dict[str, int | None]:
        """Stop children in stop order with SIGTERM, SIGKILL after the timeout; return exit codes."""
        self._stopping = True
        codes: dict[str, int | None] = {}
        by_order: dict[int, list[ComponentState]] = {}
        for state in self.states.values():
            by_order.setdefault(state.component.stop_order, []).append(state)
        for order in sorted(by_order):
            group = [
                s for s in by_order[order] if s.process is not None and s.process.poll() is None
            ]
            for state in group:
                state.state = "stopping"
                self.report(state, "stopping")
                state.process.send_signal(signal.SIGTERM)  # type: ignore[union-attr]
            deadline = time.monotonic() + self.stop_timeout
            for state in group:
                process = state.process
                assert process is not None
                try:
                    process.wait(timeout=max(0.1, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    self.report(state, "did not stop in time; killing")
                    process.kill()
                    process.wait()
            for state in by_order[order]:
                if state.process is not None:
                    codes[state.component.name] = state.process.returncode
                    state.last_exit_code = state.process.returncode
                state.state = "stopped"
                self.report(state, f"stopped with code {codes.get(state.component.name)}")
        return codes


def check_ports_free(host: str, ports: Mapping[str, int]) -> None:
    """Raise ConfigError naming the first component whose port is already taken."""
    for name, port in ports.items():
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            try:
                probe.bind((host, port))
            except OSError as error:
                raise ConfigError(
                    f"{name} port",
                    f"{host}:{port} is already in use ({error.strerror}); stop the other process "
                    "or choose another port",
                ) from None
