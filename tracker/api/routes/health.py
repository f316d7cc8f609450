"""Health of the API: registry reachability and the state and freshness of each analytics tier."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from tracker.api.routes.analytics import TIERS, iso_ms
from tracker.api.routing import Context, Reply, Route
from tracker.errors import QueryError

__all__ = ["ROUTES"]

logger = logging.getLogger(__name__)

TIER_CHECK_TIMEOUT_SECONDS = 2.0


def _registry_ok(registry: Any) -> bool:
    registry.connection().execute("SELECT 1 FROM tenants LIMIT 1").fetchall()
    return True


async def _tier_state(router: Any, tier: str) -> dict[str, Any]:
    if router is None:
        return {"state": "not_configured"}
    try:
        newest = await asyncio.wait_for(router.freshness(tier), TIER_CHECK_TIMEOUT_SECONDS)
    except QueryError as error:
        if error.code == "tier_unavailable":
            return {"state": "not_configured"}
        return {"state": "error", "detail": str(error)[:200]}
    except TimeoutError:
        return {"state": "timeout"}
    except Exception as error:  # health reports every tier failure instead of failing itself
        logger.warning(
            "Tier health check failed.", extra={"tier": tier, "error": type(error).__name__}
        )
        return {"state": "error", "detail": type(error).__name__}
    return {"state": "ok", "data_through": iso_ms(newest), "data_through_ms": newest}


async def health(context: Context) -> Reply:
    try:
        registry = "ok" if await context.call(_registry_ok, context.services.registry) else "error"
    except Exception as error:  # reported in the body and as status 503
        logger.warning("Registry health check failed.", extra={"error": type(error).__name__})
        registry = "error"
    router = context.services.query_router
    states = await asyncio.gather(*(_tier_state(router, tier) for tier in TIERS))
    status = "ok" if registry == "ok" else "degraded"
    return (200 if status == "ok" else 503), {
        "status": status,
        "registry": registry,
        "tiers": dict(zip(TIERS, states, strict=True)),
    }


HEALTH = {
    "type": "object",
    "required": ["status", "registry", "tiers"],
    "properties": {
        "status": {"type": "string", "enum": ["ok", "degraded"]},
        "registry": {"type": "string", "enum": ["ok", "error"]},
        "tiers": {"type": "object", "additionalProperties": {"type": "object"}},
    },
}

ROUTES = [
    Route(
        "GET",
        "/api/health",
        health,
        None,
        "Report the registry and each tier's state and freshness",
        "health",
        response=HEALTH,
        errors=(503,),
    ),
]

PATH_SCHEMAS: dict[str, Any] = {}
