"""`tracker serve`: check the port, start the server processes, forward signals, wait for drains.

The launcher itself never serves HTTP. It exists because Robyn 0.88 neither
stops on SIGTERM nor drains anything before exiting, and because it prompts
on stdin when the port is taken. Here the port is checked first, each server
process is a plain child that drains on SIGTERM, and the launcher exits 0
only when every child drained.
"""

from __future__ import annotations

import ctypes
import errno
import itertools
import logging
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tracker.ingest.metrics import MULTIPROC_ENV
from tracker.ingest.settings import IngestSettings

__all__ = ["PortInUse", "RegistryUnavailable", "check_port_free", "prepare_registry", "serve"]

logger = logging.getLogger(__name__)

_PR_SET_PDEATHSIG = 1
# The server process creates the file this variable names once it serves requests.
READY_FILE_ENV = "TRACKER_INGEST_READY_FILE"
RESTART_DELAY_SECONDS = 1.0
# Extra time after INGEST_DRAIN_SECONDS before a child that has not exited is killed.
STOP_MARGIN_SECONDS = 35.0


class PortInUse(OSError):
    """The configured host and port cannot be bound."""


class RegistryUnavailable(OSError):
    """The registry database cannot be opened or migrated."""


def prepare_registry(settings: IngestSettings) -> None:
    """Open the registry once and apply its migrations before any server process starts.

    Doing it here gives one clear error instead of one per server process, and
    keeps the processes from racing to migrate a new file.
    """
    from tracker.registry.db import Registry

    try:
        Registry(
            settings.registry_path,
            turso_url=settings.turso_url,
            turso_token=settings.turso_auth_token,
        ).close()
    except (OSError, sqlite3.Error) as error:
        raise RegistryUnavailable(
            f"cannot open the registry at {settings.registry_path}: {error};"
            " check REGISTRY_PATH or TRACKER_DATA_DIR"
        ) from None


def check_port_free(host: str, port: int) -> None:
    """Bind the address once without SO_REUSEPORT; raise PortInUse if that fails.

    Robyn binds with SO_REUSEPORT, so a second server on a taken port would
    start silently and share the traffic; this check rejects that case.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as error:
            if error.errno in (errno.EADDRINUSE, errno.EACCES):
                raise PortInUse(
                    f"port {port} on {host} is already in use: stop the other server or set PORT"
                ) from None
            raise PortInUse(f"cannot bind {host}:{port}: {error.strerror}") from None


def serve(settings: IngestSettings) -> int:
    """Run `settings.processes` server processes until SIGTERM or SIGINT; return the exit code."""
    check_port_free(settings.host, settings.port)
    prepare_registry(settings)
    metrics_dir = Path(tempfile.mkdtemp(prefix="tracker-ingest-metrics-"))
    env = dict(os.environ)
    env[MULTIPROC_ENV] = str(metrics_dir)

    stopping = False

    def request_stop(signum: int, frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)

    children: dict[int, _Child] = {}
    try:
        for slot in range(settings.processes):
            children[slot] = _Child.spawn(env, metrics_dir)
        logger.info(
            "Ingest service started.",
            extra={"host": settings.host, "port": settings.port, "processes": settings.processes},
        )

        while not stopping:
            time.sleep(0.1)
            for slot, child in list(children.items()):
                code = child.process.poll()
                if code is None or stopping:
                    continue
                _forget_metrics(child.process.pid, metrics_dir)
                if not child.ready():
                    logger.error(
                        "Ingest server process failed to start.",
                        extra={"pid": child.process.pid, "exit_code": code},
                    )
                    stopping = True
                    _stop_children(children, settings)
                    return 1
                # A process that served requests and then died (Robyn aborts on some
                # malformed requests) is replaced, so one request cannot end the service.
                logger.error(
                    "Ingest server process exited; restarting it.",
                    extra={"pid": child.process.pid, "exit_code": code},
                )
                time.sleep(RESTART_DELAY_SECONDS)
                children[slot] = _Child.spawn(env, metrics_dir)

        return _stop_children(children, settings)
    finally:
        shutil.rmtree(metrics_dir, ignore_errors=True)


class _Child:
    """One server process and the file it creates once it serves requests."""

    __slots__ = ("process", "ready_file")

    _numbers = itertools.count()

    def __init__(self, process: subprocess.Popen[bytes], ready_file: Path) -> None:
        self.process = process
        self.ready_file = ready_file

    @classmethod
    def spawn(cls, env: dict[str, str], directory: Path) -> _Child:
        ready_file = directory / f"ready-{next(cls._numbers)}"
        process = subprocess.Popen(
            [sys.executable, "-m", "tracker.ingest.server"],
            env=dict(env, **{READY_FILE_ENV: str(ready_file)}),
            stdin=subprocess.DEVNULL,
            preexec_fn=_die_with_parent if sys.platform.startswith("linux") else None,
        )
        return cls(process, ready_file)

    def ready(self) -> bool:
        return self.ready_file.exists()


def _stop_children(children: dict[int, _Child], settings: IngestSettings) -> int:
    """Send SIGTERM to every child, wait for their drains, kill stragglers; return the exit code."""
    for child in children.values():
        if child.process.poll() is None:
            child.process.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + settings.drain_seconds + STOP_MARGIN_SECONDS
    exit_code = 0
    for child in children.values():
        process = child.process
        try:
            code = process.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            logger.error(
                "Ingest server process did not drain in time; killing it.",
                extra={"pid": process.pid},
            )
            process.kill()
            code = process.wait()
        # A process stopped before it served anything had nothing to drain.
        stopped_before_ready = code in (-signal.SIGTERM, -signal.SIGINT) and not child.ready()
        if code != 0 and not stopped_before_ready:
            exit_code = 1
    logger.info("Ingest service stopped.", extra={"exit_code": exit_code})
    return exit_code


def _forget_metrics(pid: int, metrics_dir: Path) -> None:
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(pid, path=str(metrics_dir))


def _die_with_parent() -> None:
    """Ask Linux to send SIGTERM to this child when the launcher dies, so it drains too."""
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    except OSError:
        pass
