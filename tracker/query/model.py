"""Query model shared by the router and every tier: filters, queries and results.

Every query names its tenant explicitly and is validated when it is built, so a
tier only ever sees well-formed input. Time ranges are half-open, [start_ms,
end_ms), in Unix milliseconds. docs/analytics.md defines what each result means.
"""

from __future__ import annotations

import functools
import re
import zoneinfo
from dataclasses import dataclass
from typing import Any

from tracker.errors import QueryError

__all__ = [
    "GROUP_KEYS",
    "MAX_EVENTS_LIMIT",
    "MAX_MATCH_LIMIT",
    "EventFilter",
    "EventsPage",
    "EventsQuery",
    "GroupKey",
    "MatchQuery",
    "MatchResult",
    "StatsQuery",
    "StatsResult",
    "param_key_of",
]

GroupKey = str
"""`event_type`, `hour`, `day` or `param:<key>`."""

GROUP_KEYS = ("event_type", "hour", "day")
PARAM_GROUP_PREFIX = "param:"

MAX_EVENTS_LIMIT = 1000
MAX_MATCH_LIMIT = 1000
MAX_EVENT_TYPES = 32
MAX_PARAM_FILTERS = 16
MAX_GROUP_KEYS = 4
MAX_PARAM_KEY_LEN = 128
MAX_PARAM_VALUE_LEN = 2048
# Year 9999 in Unix milliseconds: beyond it no engine formats a date.
MAX_TIMESTAMP_MS = 253_402_300_799_999
MAX_WINDOW_MS = 365 * 24 * 3_600_000

_TENANT = re.compile(r"[a-z0-9]{1,32}")
_EVENT_TYPE = re.compile(r"[A-Za-z0-9_.:-]{1,64}")


def _clip(value: str) -> str:
    """Cut echoed input to 50 characters so an error never repeats a huge value."""
    return value if len(value) <= 50 else value[:50] + "..."


def _check_tenant(tenant: object) -> None:
    if not isinstance(tenant, str) or not _TENANT.fullmatch(tenant):
        raise QueryError(
            "invalid_tenant", "tenant", "tenant must be a key prefix of 1 to 32 characters [a-z0-9]"
        )


def _check_range(start_ms: object, end_ms: object) -> None:
    for name, value in (("start_ms", start_ms), ("end_ms", end_ms)):
        if not isinstance(value, int) or isinstance(value, bool):
            raise QueryError(
                "invalid_range", name, f"{name} must be an integer of Unix milliseconds"
            )
        if not 0 <= value <= MAX_TIMESTAMP_MS:
            raise QueryError(
                "invalid_range",
                name,
                f"{name} must lie between 0 and {MAX_TIMESTAMP_MS}, got {value}",
            )
    if start_ms >= end_ms:  # type: ignore[operator]
        raise QueryError(
            "invalid_range",
            "end_ms",
            f"end_ms ({end_ms}) must be greater than start_ms ({start_ms})",
        )


def _check_event_type(value: object, field_name: str) -> None:
    if not isinstance(value, str) or not _EVENT_TYPE.fullmatch(value):
        shown = _clip(value) if isinstance(value, str) else type(value).__name__
        raise QueryError(
            "invalid_event_type",
            field_name,
            f"{field_name} {shown!r} is invalid: expected 1 to 64 characters of [A-Za-z0-9_.:-]",
        )


def _check_param_key(key: object, field_name: str, code: str = "invalid_param") -> None:
    if not isinstance(key, str) or not 1 <= len(key) <= MAX_PARAM_KEY_LEN:
        raise QueryError(
            code, field_name, f"{field_name} param key must be 1 to {MAX_PARAM_KEY_LEN} characters"
        )
    if "\x00" in key:
        raise QueryError(
            code, field_name, f"{field_name} param key must not contain NUL characters"
        )


def _check_param_value(value: object, field_name: str) -> None:
    if not isinstance(value, str) or len(value) > MAX_PARAM_VALUE_LEN:
        raise QueryError(
            "invalid_param",
            field_name,
            f"{field_name} must be a string of at most {MAX_PARAM_VALUE_LEN} characters",
        )
    if "\x00" in value:
        raise QueryError(
            "invalid_param", field_name, f"{field_name} must not contain NUL characters"
        )


@functools.cache
def _time_zones() -> frozenset[str]:
    return frozenset(zoneinfo.available_timezones()) | {"UTC"}


def param_key_of(group_key: GroupKey) -> str | None:
    """Return the param key of a `param:<key>` group key, or None for the other keys."""
    if group_key.startswith(PARAM_GROUP_PREFIX):
        return group_key[len(PARAM_GROUP_PREFIX) :]
    return None


@dataclass(frozen=True, slots=True)
class EventFilter:
    """Events of one tenant in [start_ms, end_ms), of any of `event_types` (all when empty),
    carrying every (key, value) pair in `params`."""

    tenant: str
    start_ms: int
    end_ms: int
    event_types: tuple[str, ...] = ()
    params: tuple[tuple[str, str], ...] = ()

    def __post_init__(self) -> None:
        _check_tenant(self.tenant)
        _check_range(self.start_ms, self.end_ms)
        if not isinstance(self.event_types, tuple) or len(self.event_types) > MAX_EVENT_TYPES:
            raise QueryError(
                "invalid_event_type",
                "event_types",
                f"at most {MAX_EVENT_TYPES} event types per query",
            )
        for event_type in self.event_types:
            _check_event_type(event_type, "event_type")
        if not isinstance(self.params, tuple) or len(self.params) > MAX_PARAM_FILTERS:
            raise QueryError(
                "invalid_param", "param_key", f"at most {MAX_PARAM_FILTERS} param filters per query"
            )
        for pair in self.params:
            if not isinstance(pair, tuple) or len(pair) != 2:
                raise QueryError(
                    "invalid_param", "param_key", "each param filter is a (key, value) pair"
                )
            _check_param_key(pair[0], "param_key")
            _check_param_value(pair[1], "param_value")


@dataclass(frozen=True, slots=True)
class StatsQuery:
    """Count the filtered events, grouped by `group_by` with hour and day buckets in `tz`."""

    filter: EventFilter
    group_by: tuple[GroupKey, ...] = ()
    tz: str = "UTC"

    def __post_init__(self) -> None:
        if not isinstance(self.group_by, tuple) or len(self.group_by) > MAX_GROUP_KEYS:
            raise QueryError("invalid_group_by", "group_by", f"at most {MAX_GROUP_KEYS} group keys")
        if len(set(self.group_by)) != len(self.group_by):
            raise QueryError("invalid_group_by", "group_by", "group keys must not repeat")
        for key in self.group_by:
            if not isinstance(key, str):
                raise QueryError("invalid_group_by", "group_by", "group keys must be strings")
            param_key = param_key_of(key)
            if param_key is not None:
                _check_param_key(param_key, "group_by", "invalid_group_by")
            elif key not in GROUP_KEYS:
                raise QueryError(
                    "invalid_group_by",
                    "group_by",
                    f"group key {_clip(key)!r} is invalid: expected event_type, hour, day or param:<key>",
                )
        if not isinstance(self.tz, str) or not self.tz or len(self.tz) > 64:
            raise QueryError(
                "invalid_timezone", "tz", "tz must be an IANA time zone name such as Europe/Paris"
            )
        # Membership in the fixed IANA list, not just a loadable name, is what lets
        # tiers pass the name to engines that take it inside a type string.
        if self.tz not in _time_zones():
            raise QueryError(
                "invalid_timezone",
                "tz",
                f"unknown time zone {_clip(self.tz)!r}: use an IANA name such as Europe/Paris",
            )


@dataclass(frozen=True, slots=True)
class StatsResult:
    """Event counts: the total, one row per group, and which tier answered how fresh.

    Each row contains the group values under their group keys plus `count`; a
    `param:<key>` value is None for events without that key. `truncated` is True
    when more groups existed than the tier returns.
    """

    total: int
    rows: list[dict[str, Any]]
    tier: str
    data_through_ms: int | None
    elapsed_ms: float
    truncated: bool = False


@dataclass(frozen=True, slots=True)
class EventsQuery:
    """The filtered events, newest first, `limit` per page, resuming after `cursor`."""

    filter: EventFilter
    limit: int = 100
    cursor: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.limit, int) or isinstance(self.limit, bool):
            raise QueryError("invalid_limit", "limit", "limit must be an integer")
        if not 1 <= self.limit <= MAX_EVENTS_LIMIT:
            raise QueryError(
                "invalid_limit",
                "limit",
                f"limit must be between 1 and {MAX_EVENTS_LIMIT}, got {self.limit}",
            )
        if self.cursor is not None and (
            not isinstance(self.cursor, str) or len(self.cursor) > 1024
        ):
            raise QueryError(
                "invalid_cursor", "cursor", "cursor is malformed: pass next_cursor unchanged"
            )


@dataclass(frozen=True, slots=True)
class EventsPage:
    """One page of events in wire form and the cursor of the next page (None at the end)."""

    events: list[dict[str, Any]]
    next_cursor: str | None
    tier: str
    data_through_ms: int | None


@dataclass(frozen=True, slots=True)
class MatchQuery:
    """Pair `trigger` events with later `result` events that share the value of param `on`.

    Both kinds of event must lie in [start_ms, end_ms); a result pairs with a
    trigger only if it comes at most `window_ms` after it. `limit` caps the
    listed pairs, never the summary.
    """

    tenant: str
    trigger: str
    result: str
    on: str
    start_ms: int
    end_ms: int
    window_ms: int = 86_400_000
    limit: int = 100

    def __post_init__(self) -> None:
        _check_tenant(self.tenant)
        _check_event_type(self.trigger, "trigger")
        _check_event_type(self.result, "result")
        if self.trigger == self.result:
            raise QueryError(
                "invalid_match", "result", "result must name a different event type than trigger"
            )
        _check_param_key(self.on, "on")
        _check_range(self.start_ms, self.end_ms)
        if not isinstance(self.window_ms, int) or not 0 <= self.window_ms <= MAX_WINDOW_MS:
            raise QueryError(
                "invalid_window", "window_ms", f"window_ms must be between 0 and {MAX_WINDOW_MS}"
            )
        if not isinstance(self.limit, int) or not 0 <= self.limit <= MAX_MATCH_LIMIT:
            raise QueryError(
                "invalid_limit", "limit", f"limit must be between 0 and {MAX_MATCH_LIMIT}"
            )

    def as_filter(self) -> EventFilter:
        """Return the filter that selects both event types of this match in its range."""
        return EventFilter(self.tenant, self.start_ms, self.end_ms, (self.trigger, self.result))


@dataclass(frozen=True, slots=True)
class MatchResult:
    """Matched pairs (at most the query's limit) and a summary over every match.

    Each pair is {trigger_event, result_event, time_delta_ms}; the summary contains
    triggers, results, matched, match_rate and time_delta_ms {p50, p90, p99, min, max}.
    """

    pairs: list[dict[str, Any]]
    summary: dict[str, Any]
    tier: str
    data_through_ms: int | None
    elapsed_ms: float = 0.0
