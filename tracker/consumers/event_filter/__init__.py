"""The event filter consumer: drops bots, rate-limited and rule-matched events from `events`.

The sink lives in `sink.py`; this module only exposes its factory, so that the
registry can import the rule compiler without loading the consumer runtime.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from tracker.consumers.event_filter.sink import EventFilterSink
    from tracker.settings import Env

__all__ = ["create_sink"]


def create_sink(env: Env) -> EventFilterSink:
    from tracker.consumers.event_filter.sink import EventFilterSink, FilterSettings

    return EventFilterSink(FilterSettings.from_env(env))
