"""The `tracker api` command: serve the platform API."""

from __future__ import annotations

import typer

__all__ = ["api"]

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")


def api(
    host: str = typer.Option(
        None, "--host", help="Address to listen on; overrides API_HOST (default 127.0.0.1)."
    ),
    port: int = typer.Option(
        None, "--port", min=1, max=65535, help="TCP port; overrides API_PORT (default 8787)."
    ),
    log_level: str = typer.Option(
        "INFO", "--log-level", help="Lowest level logged: DEBUG, INFO, WARNING or ERROR."
    ),
) -> None:
    """Serve the platform API until SIGTERM or SIGINT, which exit with status 0.

    Example: API_PORT=8787 ADMIN_API_KEY=... tracker api --host 127.0.0.1
    """
    import dataclasses

    from tracker.api.logs import configure_logging
    from tracker.api.server import run
    from tracker.api.settings import ApiSettings
    from tracker.settings import load_env

    level = log_level.upper()
    if level not in LOG_LEVELS:
        typer.echo(f"error: --log-level: expected one of {', '.join(LOG_LEVELS)}", err=True)
        raise typer.Exit(2)
    configure_logging(level)
    env = load_env()
    settings = ApiSettings.from_env(env)
    if host is not None:
        settings = dataclasses.replace(settings, host=host)
    if port is not None:
        settings = dataclasses.replace(settings, port=port)
    run(settings, env)
