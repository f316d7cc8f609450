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
# A child that exits this soon after start failed to start; the launcher gives up.
STARTUP_GRACE_SECONDS = 3.0
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

    children: dict[int, tuple[subprocess.Popen[bytes], float]] = {}
    try:
        for slot in range(settings.processes):
            children[slot] = (_spawn(env), time.monotonic())
        logger.info(
            "Ingest service started.",
            extra={"host": settings.host, "port": settings.port, "processes": settings.processes},
        )

        while not stopping:
            time.sleep(0.1)
            for slot, (child, started_at) in list(children.items()):
                code = child.poll()
                if code is None or stopping:
                    continue
                _forget_metrics(child.pid, metrics_dir)
                if time.monotonic() - started_at < STARTUP_GRACE_SECONDS:
                    logger.error(
                        "Ingest server process failed to start.",
                        extra={"pid": child.pid, "exit_code": code},
                    )
                    stopping = True
                    _stop_children(children, settings)
                    return 1
                logger.error(
                    "Ingest server process exited; restarting it.",
                    extra={"pid": child.pid, "exit_code": code},
                )
                time.sleep(RESTART_DELAY_SECONDS)
                children[slot] = (_spawn(env), time.monotonic())

        return _stop_children(children, settings)
    finally:
        shutil.rmtree(metrics_dir, ignore_errors=True)


def _spawn(env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "tracker.ingest.server"],
        env=env,
        stdin=subprocess.DEVNULL,
        preexec_fn=_die_with_parent if sys.platform.startswith("linux") else None,
    )


def _stop_children(
    children: dict[int, tuple[subprocess.Popen[bytes], float]], settings: IngestSettings
) -> int:
    """Send SIGTERM to every child, wait for their drains, kill stragglers; return the exit code."""
    for child, _ in children.values():
        if child.poll() is None:
            child.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + settings.drain_seconds + STOP_MARGIN_SECONDS
    exit_code = 0
    for child, _ in children.values():
        try:
            code = child.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            logger.error(
                "Ingest server process did not drain in time; killing it.", extra={"pid": child.pid}
            )
            child.kill()
            code = child.wait()
        if code != 0:
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
