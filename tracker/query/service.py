"""Builds the router and its tiers from QuerySettings, the one entry point the API needs."""

from __future__ import annotations

from tracker.errors import QueryError
from tracker.query.cold import ColdTier
from tracker.query.cursor import CursorCodec
from tracker.query.hot import HotTier
from tracker.query.router import PlanLookup, Router
from tracker.query.settings import QuerySettings
from tracker.query.warm import WarmTier

__all__ = ["build_router", "hour_window"]

HOUR_MS = 3_600_000


def build_router(settings: QuerySettings, plan_lookup: PlanLookup) -> Router:
    """Create the tiers that `settings` configure (hot only with HOT_DSN) and a router over them.

    Call `await router.close()` on shutdown to release the hot tier's connections.
    """
    codec = CursorCodec(settings.cursor_key)
    hot = None
    if settings.hot_dsn:
        hot = HotTier(
            settings.hot_dsn,
            settings.hot_schema,
            codec,
            retention_days=settings.hot_retention_days,
            timeout_seconds=settings.query_timeout_seconds,
            max_groups=settings.max_groups,
        )
    warm = WarmTier(
        settings.warm_dir,
        retention_days=settings.warm_retention_days,
        max_groups=settings.max_groups,
    )
    cold = ColdTier(
        settings.archive_uri,
        codec,
        storage_options=settings.archive_storage_options or None,
        max_groups=settings.max_groups,
        timeout_seconds=settings.query_timeout_seconds,
    )
    return Router(hot, warm, cold, plan_lookup, max_query_hours=settings.max_query_hours)


def hour_window(hours: int, now_ms: int) -> tuple[int, int]:
    """Return [start_ms, end_ms) covering the last `hours` hours, aligned to whole UTC hours.

    The end is the next hour boundary after `now_ms`, so the window includes
    every event up to now and the warm tier, which stores whole hours, can
    answer it exactly.
    """
    if isinstance(hours, bool) or not isinstance(hours, int) or hours < 1:
        raise QueryError(
            "invalid_hours", "hours", f"hours must be a positive integer, got {str(hours)[:50]}"
        )
    end_ms = now_ms - now_ms % HOUR_MS + HOUR_MS
    if hours * HOUR_MS > end_ms:
        raise QueryError(
            "window_too_long", "hours", f"hours ({hours}) reaches before 1970: narrow it"
        )
    return end_ms - hours * HOUR_MS, end_ms
