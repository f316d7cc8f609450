"""Start-up of `tracker api`: settings, port check, registry, query router and the Robyn server.

Robyn 0.88 prompts for another port on stdin when its own check finds the port
taken, so this module checks first and fails with a ConfigError instead.
SIGTERM and SIGINT stop the server with exit status 0.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import signal
import socket
import threading
import time
from types import FrameType
from typing import Any

from tracker._core import now_ms
from tracker.api.routing import Services
from tracker.api.settings import ApiSettings
from tracker.errors import ConfigError
from tracker.registry.db import Registry
from tracker.settings import Env

__all__ = ["build_query_router", "build_services", "check_port_free", "run"]

logger = logging.getLogger(__name__)

SHUTDOWN_GRACE_SECONDS = 1.0


def check_port_free(host: str, port: int) -> None:
    """Raise ConfigError naming API_PORT if another process listens on host:port."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        # SO_REUSEADDR ignores sockets in TIME_WAIT but still fails on a live listener.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as error:
            if error.errno == errno.EADDRINUSE:
                raise ConfigError(
                    "API_PORT",
                    f"port {port} on {host} is already in use; stop that process or choose another port",
                ) from None
            raise ConfigError(
                "API_HOST", f"cannot listen on {host}:{port}: {error.strerror}"
            ) from None


def build_query_router(env: Env, registry: Registry) -> tuple[Any, Any]:
    """Return (router, query settings) for the tiers configured in the environment."""
    from tracker.query.service import build_router
    from tracker.query.settings import QuerySettings
    from tracker.registry.tenants import get_tenant

    settings = QuerySettings.from_env(env)

    async def plan_of(tenant: str) -> str:
        tenant_row = await asyncio.to_thread(get_tenant, registry, tenant)
        return tenant_row.plan

    return build_router(settings, plan_of), settings


def build_services(settings: ApiSettings, env: Env) -> Services:
    """Open the registry and build what every handler shares."""
    from tracker.consumers.ssrf import NetworkPolicy

    registry = Registry(
        settings.registry_path, turso_url=settings.turso_url, turso_token=settings.turso_token
    )
    router, query_settings = build_query_router(env, registry)
    return Services(
        registry=registry,
        settings=settings,
        query_router=router,
        query_settings=query_settings,
        webhook_policy=NetworkPolicy.from_env(env),
        started_at_ms=now_ms(),
    )


def _exit_after_drain() -> None:
    time.sleep(SHUTDOWN_GRACE_SECONDS)
    logging.shutdown()
    os._exit(0)


def _stop(signum: int, frame: FrameType | None) -> None:
    # Actix (inside Robyn) also receives the signal and drains open requests, but
    # Robyn's Python event loop keeps running afterwards (seen with Robyn 0.88), so
    # the process exits here once the grace period has passed.
    logger.info("API server stopping.", extra={"signal": signal.Signals(signum).name})
    threading.Thread(target=_exit_after_drain, name="api-shutdown", daemon=True).start()


def run(settings: ApiSettings, env: Env) -> None:
    """Serve the API until SIGTERM or SIGINT."""
    from tracker.api.app import build_app

    check_port_free(settings.host, settings.port)
    services = build_services(settings, env)
    app = build_app(services)
    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    logger.info("API server starting.", extra={"host": settings.host, "port": settings.port})
    try:
        app.start(host=settings.host, port=settings.port, _check_port=False)
    finally:
        services.registry.close()
