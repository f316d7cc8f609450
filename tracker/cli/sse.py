"""The `tracker sse` command: serve live events as Server-Sent Events."""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
import time
from types import FrameType

import typer

__all__ = ["sse"]

logger = logging.getLogger(__name__)

# Streams never end on their own and the gateway keeps no state to save, so the
# process exits after this pause, which gives Actix time to close its sockets.
SHUTDOWN_GRACE_SECONDS = 0.5


def _exit_soon() -> None:
    time.sleep(SHUTDOWN_GRACE_SECONDS)
    logging.shutdown()
    os._exit(0)


def _stop(signum: int, frame: FrameType | None) -> None:
    # Robyn 0.88 leaves its Python event loop running after Actix stops on a
    # signal, so the process would never exit by itself.
    logger.info("SSE gateway stopping.", extra={"signal": signal.Signals(signum).name})
    threading.Thread(target=_exit_soon, name="sse-shutdown", daemon=True).start()


def sse(
    host: str = typer.Option(
        None, "--host", help="Address to listen on; overrides SSE_HOST (default 127.0.0.1)."
    ),
    port: int = typer.Option(
        None, "--port", min=1, max=65535, help="TCP port; overrides SSE_PORT (default 3031)."
    ),
) -> None:
    """Stream each tenant's live events at GET /events/stream until SIGTERM or SIGINT.

    Example: tracker sse --port 3031, then curl -N 'http://127.0.0.1:3031/events/stream?key=trk_...'
    """
    import dataclasses

    from tracker.broker import open_broker
    from tracker.broker.settings import BrokerSettings
    from tracker.cli.registry import open_registry
    from tracker.settings import load_env
    from tracker.sse.app import SseGateway
    from tracker.sse.settings import SseSettings

    logging.basicConfig(level=logging.INFO, stream=sys.stderr)
    env = load_env()
    settings = SseSettings.from_env(env)
    if host is not None:
        settings = dataclasses.replace(settings, host=host)
    if port is not None:
        settings = dataclasses.replace(settings, port=port)
    broker_settings = BrokerSettings.from_env(env)
    registry = open_registry()
    gateway = SseGateway(
        settings, open_broker(broker_settings), registry, admin_key=env.str("ADMIN_API_KEY")
    )
    app = gateway.build_app()
    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    app.start(host=settings.host, port=settings.port, _check_port=False)
