"""Route table of the ingest app: Robyn calls every guard directly, without its wrapper."""

from __future__ import annotations

from types import SimpleNamespace

from prometheus_client import CollectorRegistry
from robyn import Config

from tracker.ingest.app import build_app
from tracker.ingest.metrics import IngestMetrics
from tracker.unmatched import METHODS

HANDLER_NAMES = (
    "click",
    "short_link",
    "beacon",
    "beacon_preflight",
    "postback",
    "impression",
    "batch",
    "ingest",
    "health",
    "health_broker",
    "metrics_text",
    "beacon_script",
)


async def _unused(request):
    raise AssertionError("not called")


def test_every_route_calls_its_guard_directly():
    service = SimpleNamespace(
        settings=SimpleNamespace(max_header_bytes=8192),
        metrics=IngestMetrics(CollectorRegistry()),
        **dict.fromkeys(HANDLER_NAMES, _unused),
    )

    app = build_app(service, Config())

    routes = app.router.routes
    catch_alls = [route for route in routes if route.route in ("/*unmatched_path", "/")]
    assert len(routes) == len(HANDLER_NAMES) + len(catch_alls)
    assert len(catch_alls) == 2 * len(METHODS)
    for route in routes:
        function = route.function
        guard = function.handler.__wrapped__
        assert getattr(guard, "_ingest_guard", False) is True, route.route
        assert function.is_async
        assert function.number_of_params == 1
        assert dict(function.kwargs) == {}
