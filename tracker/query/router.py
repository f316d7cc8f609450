"""Tier router: picks hot, warm or cold for each query and falls back when a tier cannot answer.

Rules, in order (docs/analytics.md repeats them for API users):

1. An explicit `tier` is used as given; if that tier cannot answer, the
   QueryError reaches the caller unchanged.
2. The hot tier, when configured, is tried first for any query whose start
   lies inside its retention.
3. Otherwise the tenant's plan decides: `free` goes to warm, every other plan
   (`pro` and anything unknown to this router) to cold.
4. When a tier the router chose raises QueryError with code
   `unsupported_query` (warm: event listings, match, windows beyond its
   retention and the other shapes it does not store) or `tier_unavailable`
   (hot: no table yet or the database unreachable), the router tries the
   next one: hot, then the plan's tier, then cold. So free tenants get the
   result from full history rather than an error.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from tracker._core import now_ms
from tracker.errors import QueryError
from tracker.query.model import (
    EventsPage,
    EventsQuery,
    MatchQuery,
    MatchResult,
    StatsQuery,
    StatsResult,
)

__all__ = ["TIERS", "PlanLookup", "Router", "Tier"]

logger = logging.getLogger(__name__)

TIERS = ("hot", "warm", "cold")
# QueryError codes after which the router, choosing by itself, tries the next tier.
FALLBACK_CODES = frozenset({"unsupported_query", "tier_unavailable"})

PlanLookup = Callable[[str], "str | Awaitable[str]"]
"""Returns the plan of a tenant (`free`, `pro`, ...), synchronously or as an awaitable."""


class Tier(Protocol):
    """Interface of a tier engine as the router uses it."""

    name: str
    retention_ms: int | None

    async def stats(self, query: StatsQuery) -> StatsResult: ...
    async def events(self, query: EventsQuery) -> EventsPage: ...
    async def match(self, query: MatchQuery) -> MatchResult: ...
    async def freshness(self, tenant: str | None = None) -> int | None: ...


class Router:
    """Dispatcher that sends each query to one tier; every result names that tier."""

    def __init__(
        self,
        hot: Tier | None,
        warm: Tier,
        cold: Tier,
        plan_lookup: PlanLookup,
        *,
        max_query_hours: int = 24 * 366,
        clock: Callable[[], int] = now_ms,
    ) -> None:
        self._tiers: dict[str, Tier | None] = {"hot": hot, "warm": warm, "cold": cold}
        self._plan_lookup = plan_lookup
        self._max_window_ms = max_query_hours * 3_600_000
        self._clock = clock

    async def close(self) -> None:
        """Release the connections of the tiers that hold any (the hot tier's pool)."""
        for engine in self._tiers.values():
            close = getattr(engine, "close", None)
            if close is not None:
                await close()

    def _check_window(self, start_ms: int, end_ms: int) -> None:
        if end_ms - start_ms > self._max_window_ms:
            hours = self._max_window_ms // 3_600_000
            raise QueryError(
                "window_too_long",
                "hours",
                f"the time range spans more than {hours} hours: narrow it",
            )

    async def _plan(self, tenant: str) -> str:
        plan = self._plan_lookup(tenant)
        if inspect.isawaitable(plan):
            plan = await plan
        return str(plan)

    async def candidates(self, tenant: str, start_ms: int, tier: str | None) -> list[Tier]:
        """Return the tiers to try for a query, in order."""
        if tier is not None:
            if tier not in TIERS:
                raise QueryError("invalid_tier", "tier", f"tier must be one of {', '.join(TIERS)}")
            engine = self._tiers[tier]
            if engine is None:
                raise QueryError(
                    "tier_unavailable", "tier", f"the {tier} tier is not configured here"
                )
            return [engine]

        warm, cold = self._tiers["warm"], self._tiers["cold"]
        assert warm is not None and cold is not None
        by_plan = [warm, cold] if await self._plan(tenant) == "free" else [cold]
        hot = self._tiers["hot"]
        if (
            hot is not None
            and hot.retention_ms is not None
            and start_ms >= self._clock() - hot.retention_ms
        ):
            return [hot, *by_plan]
        return by_plan

    async def _run(self, tiers: list[Tier], call: Callable[[Tier], Awaitable[Any]]) -> Any:
        for position, engine in enumerate(tiers):
            try:
                return await call(engine)
            except QueryError as error:
                if error.code not in FALLBACK_CODES or position == len(tiers) - 1:
                    raise
                logger.info(
                    "Tier rejected the query, trying the next one.",
                    extra={"tier": engine.name, "reason": str(error)},
                )
        raise AssertionError("candidates() never returns an empty list")

    async def stats(self, query: StatsQuery, tier: str | None = None) -> StatsResult:
        """Count events, grouped by the query's group keys, on the chosen tier."""
        self._check_window(query.filter.start_ms, query.filter.end_ms)
        tiers = await self.candidates(query.filter.tenant, query.filter.start_ms, tier)
        return await self._run(tiers, lambda engine: engine.stats(query))

    async def events(self, query: EventsQuery, tier: str | None = None) -> EventsPage:
        """List events newest first on the chosen tier."""
        self._check_window(query.filter.start_ms, query.filter.end_ms)
        tiers = await self.candidates(query.filter.tenant, query.filter.start_ms, tier)
        return await self._run(tiers, lambda engine: engine.events(query))

    async def match(self, query: MatchQuery, tier: str | None = None) -> MatchResult:
        """Match trigger and result events on the chosen tier."""
        self._check_window(query.start_ms, query.end_ms)
        tiers = await self.candidates(query.tenant, query.start_ms, tier)
        return await self._run(tiers, lambda engine: engine.match(query))

    async def freshness(self, tier: str) -> int | None:
        """Return the newest event timestamp stored in one tier."""
        tiers = await self.candidates("", 0, tier)
        return await tiers[0].freshness()
