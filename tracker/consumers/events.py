"""Validation of decoded events before a sink stores them, with one reason per defect.

Events on the broker come from the ingest service, which already enforces the wire
format, so a failure here means a foreign or corrupt producer. The sink then routes
the event to dead letters with the returned reason instead of storing it.
"""

from __future__ import annotations

import re
from typing import Any

__all__ = [
    "EVENT_FIELDS",
    "MAX_FIELD_LEN",
    "MAX_PARAMS",
    "MAX_VALUE_LEN",
    "STRING_FIELDS",
    "event_problem",
    "hour_of",
]

EVENT_FIELDS = (
    "event_id",
    "event_type",
    "timestamp",
    "ip",
    "user_agent",
    "referer",
    "accept_language",
    "request_path",
    "request_host",
    "params",
)
STRING_FIELDS = ("ip", "user_agent", "referer", "accept_language", "request_path", "request_host")

# The ingest defaults of EventLimits; an event over them did not come from our ingest.
MAX_PARAMS = 64
MAX_KEY_LEN = 128
MAX_VALUE_LEN = 2048
MAX_FIELD_LEN = 2048

_EVENT_TYPE = re.compile(r"[A-Za-z0-9_.:-]{1,64}")
_KEY_PREFIX = re.compile(r"[a-z0-9]{1,32}")
_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
# Timestamps are Unix milliseconds: 2000-01-01 to 2100-01-01 covers every real clock.
MIN_TIMESTAMP_MS = 946_684_800_000
MAX_TIMESTAMP_MS = 4_102_444_800_000


def event_problem(event: dict[str, Any]) -> str | None:
    """Return why `event` is not a valid wire event, or None when it is.

    Checks every field of the wire format: presence, type, and the length
    limits the ingest service applies.
    """
    get = event.get
    event_id = get("event_id")
    if type(event_id) is not str or len(event_id) != 36 or not _UUID.fullmatch(event_id):
        return "event_id: missing or not a lowercase UUID"
    event_type = get("event_type")
    if type(event_type) is not str or not _EVENT_TYPE.fullmatch(event_type):
        return "event_type: missing or not 1 to 64 characters of [A-Za-z0-9_.:-]"
    timestamp = get("timestamp")
    if type(timestamp) is not int or not MIN_TIMESTAMP_MS <= timestamp < MAX_TIMESTAMP_MS:
        return "timestamp: missing or not Unix milliseconds between 2000 and 2100"
    for name in STRING_FIELDS:
        value = get(name, "")
        if type(value) is not str or len(value) > MAX_FIELD_LEN:
            if not isinstance(value, str):
                return f"{name}: expected a string"
            return f"{name}: longer than {MAX_FIELD_LEN} characters"
    return params_problem(get("params"))


def params_problem(params: Any) -> str | None:
    """Return why `params` is not a valid params object with a tenant, or None."""
    if type(params) is not dict:
        return "params: missing or not an object"
    if len(params) > MAX_PARAMS:
        return f"params: more than {MAX_PARAMS} entries"
    for key, value in params.items():
        if type(value) is not str or len(value) > MAX_VALUE_LEN or len(key) > MAX_KEY_LEN:
            if len(key) > MAX_KEY_LEN:
                return f"params: a key is longer than {MAX_KEY_LEN} characters"
            if not isinstance(value, str):
                return f"params.{key[:50]}: expected a string"
            return f"params.{key[:50]}: longer than {MAX_VALUE_LEN} characters"
    key_prefix = params.get("key_prefix")
    if type(key_prefix) is not str or not _KEY_PREFIX.fullmatch(key_prefix):
        return "params.key_prefix: missing or not 1 to 32 characters of [a-z0-9]"
    return None


def hour_of(timestamp_ms: int) -> int:
    """Return the start of the UTC hour of a Unix millisecond timestamp, in Unix seconds."""
    return timestamp_ms // 3_600_000 * 3600
