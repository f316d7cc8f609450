"""The registry the CLI commands read and change, opened from the environment."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

__all__ = ["open_registry", "opened_registry"]


def open_registry() -> Any:
    """Open the registry named by REGISTRY_PATH (default <TRACKER_DATA_DIR>/registry.db) or TURSO_URL."""
    from tracker.registry.db import Registry
    from tracker.settings import load_env

    env = load_env()
    data_dir = env.path("TRACKER_DATA_DIR", ".tracker")
    return Registry(
        env.path("REGISTRY_PATH", data_dir / "registry.db"),
        turso_url=env.str("TURSO_URL"),
        turso_token=env.str("TURSO_AUTH_TOKEN"),
    )


@contextmanager
def opened_registry() -> Iterator[Any]:
    """Open the registry for one command and close it when the command ends."""
    registry = open_registry()
    try:
        yield registry
    finally:
        registry.close()
