"""Argument types shared by the tools: each carries the description and examples an assistant reads."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from tracker.mcp.client import QueryPairs

__all__ = [
    "Confirm",
    "EventTypes",
    "FromTime",
    "Hours",
    "ParamFilters",
    "Tier",
    "ToTime",
    "TuId",
    "filter_query",
    "range_query",
]

Hours = Annotated[
    int | None,
    Field(
        description="Look back this many whole hours up to the next UTC hour boundary (default 24). Leave empty when from_time is set.",
        ge=1,
        le=8784,
        examples=[24, 168],
    ),
]
FromTime = Annotated[
    str | None,
    Field(
        description="Start of the range, inclusive: ISO 8601 in UTC without offset, or Unix milliseconds.",
        max_length=40,
        examples=["2026-12-01T00:00:00", "1764547200000"],
    ),
]
ToTime = Annotated[
    str | None,
    Field(
        description="End of the range, exclusive (default now): ISO 8601 in UTC without offset, or Unix milliseconds.",
        max_length=40,
        examples=["2026-12-02T00:00:00"],
    ),
]
Tier = Annotated[
    Literal["hot", "warm", "cold"] | None,
    Field(
        description="Ask this analytics tier instead of the one the tenant's plan picks (free: warm, pro: cold).",
        examples=["cold"],
    ),
]
EventTypes = Annotated[
    list[Annotated[str, Field(pattern=r"^[A-Za-z0-9_.:-]{1,64}$")]] | None,
    Field(
        description="Only events of any of these types.",
        max_length=32,
        examples=[["click"], ["click", "postback"]],
    ),
]
ParamFilters = Annotated[
    dict[str, str] | None,
    Field(
        description="Only events whose params hold every one of these key/value pairs.",
        examples=[{"offer_id": "123"}, {"tu_id": "x7Kq2", "sub1": "fb"}],
    ),
]
TuId = Annotated[
    str,
    Field(
        description="Id of a tracking URL (short link /t/<tu_id>).",
        pattern=r"^[A-Za-z0-9_-]{1,128}$",
        examples=["x7Kq2mP9"],
    ),
]
Confirm = Annotated[
    bool,
    Field(
        description="Must be true: this call changes stored state in a way that cannot be undone by itself.",
        examples=[True],
    ),
]


def range_query(
    hours: int | None, from_time: str | None, to_time: str | None, tier: str | None
) -> list[tuple[str, str]]:
    """Return the API query pairs of a time range and tier choice."""
    pairs: list[tuple[str, str]] = []
    if hours is not None:
        pairs.append(("hours", str(hours)))
    if from_time is not None:
        pairs.append(("from", from_time))
    if to_time is not None:
        pairs.append(("to", to_time))
    if tier is not None:
        pairs.append(("tier", tier))
    return pairs


def filter_query(event_types: list[str] | None, params: dict[str, str] | None) -> QueryPairs:
    """Return the API query pairs of event type and param filters."""
    pairs = [("event_type", event_type) for event_type in event_types or ()]
    # param_key/param_value pairs rather than param.<key>, so a key may hold any character.
    for key, value in sorted((params or {}).items()):
        pairs.append(("param_key", key))
        pairs.append(("param_value", value))
    return pairs
