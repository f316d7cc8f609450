"""Stream consumers: the registry of sinks that `tracker consume NAME` can run.

Each entry is the dotted path `module:function` of a factory `create_sink(env) -> Sink`,
imported only when that consumer starts, so one sink never loads the heavy
dependencies of another (asyncpg, deltalake, polars).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from tracker.errors import ConfigError

if TYPE_CHECKING:
    from tracker.consumers.runtime import Sink
    from tracker.settings import Env

__all__ = ["SINKS", "create_sink"]

SINKS: dict[str, str] = {
    "archiver": "tracker.consumers.archiver:create_sink",
    "archiver-filtered": "tracker.consumers.archiver:create_filtered_sink",
    "event-filter": "tracker.consumers.event_filter:create_sink",
    "hot-writer": "tracker.consumers.hot_writer:create_sink",
    "stats": "tracker.consumers.stats:create_sink",
    "warm-aggregator": "tracker.consumers.warm_aggregator:create_sink",
    "webhooks": "tracker.consumers.webhooks:create_sink",
}


def create_sink(name: str, env: Env) -> Sink:
    """Import the factory registered under `name` and build the sink from `env`."""
    try:
        target = SINKS[name]
    except KeyError:
        known = ", ".join(sorted(SINKS))
        raise ConfigError(
            "consumer", f"unknown consumer {name[:50]!r}; expected one of {known}"
        ) from None
    module_name, _, function_name = target.partition(":")
    module = importlib.import_module(module_name)
    factory = getattr(module, function_name)
    return factory(env)
