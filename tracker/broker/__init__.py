"""Broker backends (local log, Iggy, noop), their settings and the producer.

`open_broker(settings)` builds the backend that `BROKER` names; nothing here
falls back to another backend on its own.
"""

from __future__ import annotations

from tracker.broker.base import Broker, Message
from tracker.broker.settings import BACKENDS, BrokerSettings
from tracker.errors import ConfigError

__all__ = ["BACKENDS", "Broker", "BrokerSettings", "Message", "open_broker"]


def open_broker(settings: BrokerSettings) -> Broker:
    """Return an unconnected broker of the configured backend; call `await connect()` next."""
    if settings.backend == "local":
        from tracker.broker.local import LocalBroker

        return LocalBroker(settings)
    if settings.backend == "iggy":
        from tracker.broker.iggy import IggyBroker

        return IggyBroker(settings)
    if settings.backend == "noop":
        from tracker.broker.noop import NoopBroker

        return NoopBroker(settings)
    raise ConfigError(
        "BROKER", f"expected one of {', '.join(BACKENDS)}, got {settings.backend[:50]!r}"
    )
