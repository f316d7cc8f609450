"""`tracker mcp`: serve the platform as MCP tools over stdio or streamable HTTP."""

from __future__ import annotations

import os
from typing import Annotated

import typer

from tracker.errors import ConfigError
from tracker.settings import load_env

__all__ = ["mcp"]


def mcp(
    http: Annotated[
        bool, typer.Option("--http", help="Serve streamable HTTP at /mcp instead of stdio.")
    ] = False,
    host: Annotated[str, typer.Option(help="Address to bind with --http.")] = "127.0.0.1",
    port: Annotated[
        int, typer.Option(help="TCP port to listen on with --http.", min=1, max=65535)
    ] = 8790,
    api_key: Annotated[
        str | None,
        typer.Option(
            "--api-key",
            help="Tenant API key; overrides TRACKER_API_KEY. Prefer the variable, as arguments show in ps.",
        ),
    ] = None,
    api_url: Annotated[
        str | None,
        typer.Option("--api-url", help="Platform API base URL; overrides TRACKER_API_URL."),
    ] = None,
) -> None:
    """Serve the platform's tools to AI assistants over the Model Context Protocol.

    Example: TRACKER_API_KEY=trk_... tracker mcp --http --port 8790
    """
    try:
        from tracker.mcp.server import build_server
        from tracker.mcp.settings import McpSettings
    except ModuleNotFoundError as error:
        if error.name is None or not error.name.startswith("mcp"):
            raise
        raise ConfigError(
            "mcp", "the mcp package is missing; install tracker-platform[mcp]"
        ) from None

    # The options win over the environment and .env, which load_env merges.
    if api_key is not None:
        os.environ["TRACKER_API_KEY"] = api_key
    if api_url is not None:
        os.environ["TRACKER_API_URL"] = api_url
    settings = McpSettings.from_env(load_env())
    server = build_server(settings)
    if http:
        server.run("streamable-http", host=host, port=port)
    else:
        server.run("stdio")
