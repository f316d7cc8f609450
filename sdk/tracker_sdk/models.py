"""Typed results of the platform API: events, stats, matches and tracking URLs.

Each result keeps the decoded JSON it came from in `raw`, so fields the platform adds
later stay reachable before the SDK names them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True)
class Event:
    """One stored event, field for field as the platform records it; `timestamp` is Unix ms."""

    event_id: str
    event_type: str
    timestamp: int
    params: dict[str, str]
    ip: str = ""
    user_agent: str = ""
    referer: str = ""
    accept_language: str = ""
    request_path: str = ""
    request_host: str = ""

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Event:
        return cls(
            event_id=str(data["event_id"]),
            event_type=str(data["event_type"]),
            timestamp=int(data["timestamp"]),
            params={str(k): str(v) for k, v in (data.get("params") or {}).items()},
            ip=str(data.get("ip") or ""),
            user_agent=str(data.get("user_agent") or ""),
            referer=str(data.get("referer") or ""),
            accept_language=str(data.get("accept_language") or ""),
            request_path=str(data.get("request_path") or ""),
            request_host=str(data.get("request_host") or ""),
        )


@dataclass(frozen=True, slots=True)
class EventPage:
    """One page of `/api/events`, newest first; `next_cursor` is None on the last page."""

    events: list[Event]
    next_cursor: str | None
    tier: str | None
    """The tier that ran the query: hot, warm or cold."""
    data_through_ms: int | None
    """Newest event timestamp stored in the tier (Unix ms), or None when it is empty."""
    raw: dict[str, Any] = field(repr=False)


@dataclass(frozen=True, slots=True)
class Stats:
    """Result of `/api/events/stats`: the total and, with `group_by`, one row per group.

    Each row contains its group values under the group keys and its `count`. `truncated` is
    true when the server returned only the largest groups; `total` still covers all.
    """

    total: int
    rows: list[dict[str, Any]]
    truncated: bool
    tier: str | None
    data_through_ms: int | None
    raw: dict[str, Any] = field(repr=False)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Stats:
        return cls(
            total=int(data["total"]),
            rows=list(data.get("rows") or []),
            truncated=bool(data.get("truncated", False)),
            tier=data.get("tier"),
            data_through_ms=data.get("data_through_ms"),
            raw=data,
        )


@dataclass(frozen=True, slots=True)
class MatchPair:
    """A trigger event, the result event that shares its param, and the gap in milliseconds."""

    trigger_event: Event
    result_event: Event
    time_delta_ms: int


@dataclass(frozen=True, slots=True)
class MatchResult:
    """Result of `/api/events/match`.

    `pairs` lists the first `limit` pairs in trigger order. The counts cover the whole
    range: `matched` pairs out of `triggers`, and `match_rate` is matched / triggers.
    `time_delta_ms` has the keys p50, p90, p99, min and max (None without pairs).
    """

    pairs: list[MatchPair]
    triggers: int
    results: int
    matched: int
    match_rate: float
    time_delta_ms: dict[str, int | None]
    tier: str | None
    raw: dict[str, Any] = field(repr=False)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> MatchResult:
        pairs = [
            MatchPair(
                trigger_event=Event.from_json(item["trigger_event"]),
                result_event=Event.from_json(item["result_event"]),
                time_delta_ms=int(item["time_delta_ms"]),
            )
            for item in data.get("pairs") or []
        ]
        summary = data.get("summary") or {}
        return cls(
            pairs=pairs,
            triggers=int(summary.get("triggers", 0)),
            results=int(summary.get("results", 0)),
            matched=int(summary.get("matched", len(pairs))),
            match_rate=float(summary.get("match_rate", 0.0)),
            time_delta_ms=dict(summary.get("time_delta_ms") or {}),
            tier=data.get("tier"),
            raw=data,
        )


@dataclass(frozen=True, slots=True)
class TrackingUrl:
    """A short link `/t/<tu_id>` registered on the platform; times are Unix seconds."""

    tu_id: str
    key_prefix: str
    destination: str
    name: str
    params: dict[str, str]
    status: str
    created_at: int
    updated_at: int

    @property
    def active(self) -> bool:
        return self.status == "active"

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> TrackingUrl:
        return cls(
            tu_id=str(data["tu_id"]),
            key_prefix=str(data.get("key_prefix") or ""),
            destination=str(data["destination"]),
            name=str(data.get("name") or ""),
            params={str(k): str(v) for k, v in (data.get("params") or {}).items()},
            status=str(data.get("status") or "active"),
            created_at=int(data.get("created_at") or 0),
            updated_at=int(data.get("updated_at") or 0),
        )
