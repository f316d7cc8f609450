"""Query-string decoding and the parsers for time ranges, filters, group keys and windows.

Robyn 0.88 hands query parameters over still percent-encoded, so `decode_query`
decodes every name and value exactly once (as application/x-www-form-urlencoded,
where `+` is a space). Dispatch hands handlers only the decoded `QueryArgs`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from urllib.parse import unquote_plus

from tracker.api.errors import ApiError
from tracker.query.service import hour_window

__all__ = [
    "MAX_QUERY_VALUES",
    "PARAM_PREFIX",
    "QueryArgs",
    "decode_component",
    "decode_query",
    "parse_group_by",
    "parse_param_filters",
    "parse_time",
    "parse_time_range",
    "parse_window",
]

MAX_QUERY_VALUES = 200
"""Maximum number of name=value pairs in one query string."""

PARAM_PREFIX = "param."
DEFAULT_HOURS = 24
HOUR_MS = 3_600_000
# Year 9999 in Unix milliseconds, the last instant ISO 8601 dates can name.
MAX_TIMESTAMP_MS = 253_402_300_799_999
_WINDOW = re.compile(r"([0-9]{1,12})(ms|s|m|h|d)?")
_WINDOW_UNIT_MS = {"ms": 1, "s": 1000, "m": 60_000, "h": HOUR_MS, "d": 24 * HOUR_MS}


def _clip(value: str) -> str:
    return value if len(value) <= 50 else value[:50] + "..."


def decode_component(raw: str, field: str) -> str:
    """Percent-decode one query or path component; raise ApiError if it is not UTF-8."""
    try:
        return unquote_plus(raw, encoding="utf-8", errors="strict")
    except UnicodeDecodeError:
        raise ApiError(
            "invalid_encoding", field, f"{_clip(field)} is not valid percent-encoded UTF-8"
        ) from None


class QueryArgs:
    """Decoded query parameters: each name with its values in the order they were sent."""

    def __init__(self, values: Mapping[str, list[str]]) -> None:
        self._values = dict(values)

    def names(self) -> list[str]:
        return list(self._values)

    def all(self, name: str) -> list[str]:
        return list(self._values.get(name, ()))

    def one(self, name: str) -> str | None:
        """Return the single value of `name`, None if absent; raise ApiError if repeated."""
        values = self._values.get(name)
        if not values:
            return None
        if len(values) > 1:
            raise ApiError(
                "repeated_parameter", name, f"{name} may appear only once, got {len(values)}"
            )
        return values[0]

    def integer(self, name: str, default: int, *, minimum: int, maximum: int) -> int:
        """Return `name` as an integer within [minimum, maximum], or `default` if absent."""
        raw = self.one(name)
        if raw is None:
            return default
        if not re.fullmatch(r"-?[0-9]{1,18}", raw):
            raise ApiError(
                "invalid_integer", name, f"{name} must be an integer, got {_clip(raw)!r}"
            )
        value = int(raw)
        if not minimum <= value <= maximum:
            raise ApiError(
                "out_of_range", name, f"{name} must be between {minimum} and {maximum}, got {value}"
            )
        return value

    def reject_unknown(self, allowed: Iterable[str], *, prefixes: tuple[str, ...] = ()) -> None:
        """Raise ApiError naming every parameter that is neither in `allowed` nor under a prefix."""
        known = set(allowed)
        unknown = [
            name for name in self._values if name not in known and not name.startswith(prefixes)
        ]
        if unknown:
            shown = ", ".join(_clip(name) for name in unknown[:10])
            expected = ", ".join(sorted(known) + [f"{prefix}<key>" for prefix in prefixes])
            raise ApiError(
                "unknown_parameter",
                unknown[0],
                f"unknown query parameter(s): {shown}; this endpoint accepts {expected}",
            )


def decode_query(raw: Mapping[str, list[str]]) -> QueryArgs:
    """Decode Robyn's still-encoded query parameters into QueryArgs, once."""
    count = sum(len(values) for values in raw.values())
    if count > MAX_QUERY_VALUES:
        raise ApiError(
            "too_many_parameters",
            "",
            f"the query string has {count} parameters, the maximum is {MAX_QUERY_VALUES}",
        )
    decoded: dict[str, list[str]] = {}
    for raw_name, raw_values in raw.items():
        name = decode_component(raw_name, "query")
        decoded.setdefault(name, []).extend(decode_component(value, name) for value in raw_values)
    return QueryArgs(decoded)


def parse_time(raw: str, field: str) -> int:
    """Parse ISO 8601 (UTC when no offset is given) or Unix milliseconds into Unix ms."""
    text = raw.strip()
    if re.fullmatch(r"[0-9]{1,15}", text):
        value = int(text)
    else:
        try:
            moment = datetime.fromisoformat(text)
        except ValueError:
            raise ApiError(
                "invalid_time",
                field,
                f"{field} must be ISO 8601 (2026-01-31T12:00:00Z) or Unix milliseconds,"
                f" got {_clip(raw)!r}",
            ) from None
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
        value = int(moment.timestamp() * 1000)
    if not 0 <= value <= MAX_TIMESTAMP_MS:
        raise ApiError(
            "invalid_time",
            field,
            f"{field} must lie between 1970 and the year 9999, got {_clip(raw)!r}",
        )
    return value


def parse_time_range(args: QueryArgs, *, now_ms: int, max_hours: int) -> tuple[int, int]:
    """Return the half-open range [start_ms, end_ms) that `hours` or `from`/`to` select.

    Without any of them the last DEFAULT_HOURS whole hours are used. A range longer
    than `max_hours` hours is rejected so that no query scans without a bound.
    """
    hours_raw = args.one("hours")
    start_raw = args.one("from")
    end_raw = args.one("to")
    if hours_raw is not None and (start_raw is not None or end_raw is not None):
        raise ApiError("conflicting_parameters", "hours", "pass either hours or from/to, not both")

    if start_raw is None and end_raw is None:
        hours = args.integer("hours", DEFAULT_HOURS, minimum=1, maximum=max_hours)
        # Whole UTC hours ending at the next hour boundary, so the warm tier's
        # hourly rollups give exact counts and every event up to now is included.
        return hour_window(hours, now_ms)

    end_ms = parse_time(end_raw, "to") if end_raw is not None else now_ms
    if start_raw is None:
        start_ms = max(0, end_ms - DEFAULT_HOURS * HOUR_MS)
    else:
        start_ms = parse_time(start_raw, "from")
    if start_ms >= end_ms:
        raise ApiError("invalid_range", "to", "to must be later than from")
    if end_ms - start_ms > max_hours * HOUR_MS:
        raise ApiError(
            "range_too_large",
            "from",
            f"the range from..to spans more than {max_hours} hours (MAX_QUERY_HOURS); narrow it",
        )
    return start_ms, end_ms


def parse_param_filters(args: QueryArgs) -> tuple[tuple[str, str], ...]:
    """Collect param filters from `param_key`/`param_value` pairs and `param.<key>=<value>`.

    The n-th `param_key` pairs with the n-th `param_value`, so the counts must match.
    """
    keys = args.all("param_key")
    values = args.all("param_value")
    if len(keys) != len(values):
        field = "param_value" if len(keys) > len(values) else "param_key"
        raise ApiError(
            "unpaired_param_filter",
            field,
            f"got {len(keys)} param_key and {len(values)} param_value: send them in pairs",
        )
    pairs = list(zip(keys, values, strict=True))
    for name in args.names():
        if name.startswith(PARAM_PREFIX):
            key = name[len(PARAM_PREFIX) :]
            if not key:
                raise ApiError("invalid_param", name, "param.<key> needs a key after the dot")
            pairs.extend((key, value) for value in args.all(name))
    return tuple(pairs)


def parse_group_by(raw: str | None) -> tuple[str, ...]:
    """Split a comma list of group keys; the query model validates each key."""
    if raw is None or raw.strip() == "":
        return ()
    return tuple(part.strip() for part in raw.split(","))


def parse_window(raw: str | None, default_ms: int) -> int:
    """Parse a match window: `30m`, `24h`, `7d`, `90s`, `500ms` or plain milliseconds."""
    if raw is None:
        return default_ms
    found = _WINDOW.fullmatch(raw.strip())
    if found is None:
        raise ApiError(
            "invalid_window",
            "window",
            f"window must look like 30m, 24h, 7d or a number of milliseconds, got {_clip(raw)!r}",
        )
    return int(found.group(1)) * _WINDOW_UNIT_MS[found.group(2) or "ms"]
