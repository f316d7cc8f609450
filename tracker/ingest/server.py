"""One ingest server process: registry cache, producer and Robyn, with a draining shutdown.

`tracker serve` starts one or more of these (`python -m tracker.ingest.server`)
on the same port; the kernel spreads connections over them. On SIGTERM or
SIGINT a process stops taking new requests (503), waits for the requests in
flight, flushes its producer so every accepted event is durable, and exits 0.
Robyn 0.88 itself ignores SIGTERM when it runs in one process, so this module
installs its own handlers from the start-up hook.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
import time
from pathlib import Path

from tracker.errors import ConfigError, TrackerError
from tracker.ingest.launcher import READY_FILE_ENV
from tracker.ingest.logs import configure_logging
from tracker.ingest.settings import IngestSettings

__all__ = ["main", "run"]

logger = logging.getLogger(__name__)

GAUGE_INTERVAL_SECONDS = 1.0
EXIT_CONFIG = 2


def run(settings: IngestSettings) -> None:
    """Start the server in this process and serve until a signal drains and ends it."""
    from robyn import Config

    from tracker.broker.producer import Producer
    from tracker.ingest.app import build_app
    from tracker.ingest.beacon import load_beacon_script
    from tracker.ingest.cache import RegistryCache
    from tracker.ingest.memory import release_large_buffers
    from tracker.ingest.metrics import IngestMetrics
    from tracker.ingest.service import IngestService
    from tracker.registry.db import Registry

    release_large_buffers()

    registry = Registry(
        settings.registry_path, turso_url=settings.turso_url, turso_token=settings.turso_auth_token
    )
    cache = RegistryCache(registry, refresh_seconds=settings.registry_refresh_seconds)
    cache.start()
    producer = Producer.from_settings(settings.broker)
    producer.start()
    script = load_beacon_script()
    if script is None:
        logger.warning("Beacon script t.js not found; GET /t.js returns 404.")

    service = IngestService(settings, cache, producer, registry, IngestMetrics(), script)
    config = Config()
    config.processes = 1
    config.workers = settings.workers
    config.log_level = "WARN"
    config.disable_openapi = True
    app = build_app(service, config)

    def begin_shutdown(signum: int, frame: object) -> None:
        if service.draining:
            return
        service.draining = True
        threading.Thread(
            target=_drain, args=(service, producer, cache, settings), name="drain"
        ).start()

    # Robyn runs an async start-up hook on the main thread's event loop, so it may install
    # signal handlers. A plain function hook would run on a worker thread and fail.
    async def start_serving() -> None:
        signal.signal(signal.SIGTERM, begin_shutdown)
        signal.signal(signal.SIGINT, begin_shutdown)
        _report_ready()

    app.startup_handler(start_serving)
    threading.Thread(target=_update_gauges, args=(service,), name="gauges", daemon=True).start()
    logger.info(
        "Ingest server starting.",
        extra={
            "host": settings.host,
            "port": settings.port,
            "pid": os.getpid(),
            "backend": settings.broker.backend,
        },
    )
    app.start(host=settings.host, port=settings.port, _check_port=False)


def _drain(service, producer, cache, settings: IngestSettings) -> None:
    """Wait for requests in flight, make every accepted event durable, then end the process."""
    started = time.monotonic()
    deadline = started + settings.drain_seconds
    while service.in_flight > 0 and time.monotonic() < deadline:
        time.sleep(0.005)
    remaining = max(1.0, deadline - time.monotonic())
    drained = producer.close(timeout=remaining)
    cache.stop()
    service.metrics.flush()
    logger.info(
        "Ingest server stopped.",
        extra={
            "pid": os.getpid(),
            "drained": drained,
            "requests_in_flight": service.in_flight,
            "seconds": round(time.monotonic() - started, 3),
        },
    )
    logging.shutdown()
    # Robyn offers no call that stops its server from Python, so the process ends here.
    os._exit(0 if drained else 1)


def _report_ready() -> None:
    """Create the launcher's ready file, if it named one, now that requests are served."""
    path = os.environ.get(READY_FILE_ENV)
    if not path:
        return
    try:
        Path(path).touch()
    except OSError as error:
        logger.warning(
            "Creating the ready file failed; a later exit of this process stops the service.",
            extra={"path": path, "error": str(error)},
        )


def _update_gauges(service) -> None:
    while True:
        time.sleep(GAUGE_INTERVAL_SECONDS)
        try:
            service.update_gauges()
        except Exception as error:  # a gauge must never stop the loop that keeps it fresh
            logger.warning("Updating metrics gauges failed.", extra={"error": str(error)})


def main() -> None:
    """Entry point of one server process; settings come from the environment."""
    try:
        settings = IngestSettings.from_env()
    except ConfigError as error:
        print(f"error: {error}", file=sys.stderr)
        raise SystemExit(EXIT_CONFIG) from None
    configure_logging(settings.log_format)
    try:
        run(settings)
    except TrackerError as error:
        logger.error("Ingest server failed to start.", extra={"error": str(error)})
        raise SystemExit(1) from None


if __name__ == "__main__":
    main()
