"""`tracker serve`: run the ingestion service."""

from __future__ import annotations

import sys

from tracker.errors import ConfigError

EXIT_CONFIG = 2


def serve() -> None:
    """Run the ingestion service (clicks, postbacks, impressions, beacon, batches).

    Every setting comes from the environment or `.env` (PORT, HOST, URL_MODE,
    INGEST_PROCESSES, ...); see `.env.example`. SIGTERM or Ctrl-C drains the
    server processes and exits 0 once every accepted event is durable.
    """
    from tracker.ingest.launcher import PortInUse, RegistryUnavailable
    from tracker.ingest.launcher import serve as run_service
    from tracker.ingest.logs import configure_logging
    from tracker.ingest.settings import IngestSettings

    try:
        settings = IngestSettings.from_env()
    except ConfigError as error:
        print(f"error: {error}", file=sys.stderr)
        raise SystemExit(EXIT_CONFIG) from None
    configure_logging(settings.log_format)
    try:
        code = run_service(settings)
    except (PortInUse, RegistryUnavailable) as error:
        print(f"error: {error}", file=sys.stderr)
        raise SystemExit(1) from None
    raise SystemExit(code)
