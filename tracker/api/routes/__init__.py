"""Handlers of the platform API, one module per resource, and the full route table."""

from __future__ import annotations

from tracker.api.routing import Route

__all__ = ["all_routes"]


def all_routes() -> list[Route]:
    """Return every route of the API in a fixed order."""
    from tracker.api.routes import (
        analytics,
        click_urls,
        health,
        keys,
        tenants,
        tracking_urls,
        webhooks,
    )

    return [
        *health.ROUTES,
        *tenants.ROUTES,
        *keys.ROUTES,
        *click_urls.ROUTES,
        *tracking_urls.ROUTES,
        *webhooks.ROUTES,
        *analytics.ROUTES,
    ]
