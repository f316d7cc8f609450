"""The Robyn application of the ingestion service: routes, and the guard around every handler.

The guard checks the header size, returns 503 while the process drains,
turns IngestError into its JSON response, counts every request and event
rejection, and turns any unexpected exception into a logged 503, so no
handler ever produces a 500.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable

from robyn import Config, Request, Response, Robyn
from robyn.robyn import FunctionInfo

from tracker.ingest.errors import IngestError, error_response
from tracker.ingest.requests import check_headers
from tracker.ingest.service import IngestService
from tracker.ingest.threadstate import keeping_thread_state
from tracker.unmatched import add_unmatched_routes

__all__ = ["build_app"]

logger = logging.getLogger(__name__)

Handler = Callable[[Request], Awaitable[Response]]

# Rejection reason label (tracker_ingest_events_rejected_total) for each error code.
_REJECTION_REASON = {
    "ambiguous_click": "request",
    "duplicate_param": "request",
    "invalid_batch": "request",
    "invalid_destination": "destination",
    "invalid_encoding": "request",
    "invalid_event": "event",
    "invalid_json": "request",
    "invalid_param": "request",
    "missing_param": "request",
    "param_too_long": "limits",
    "too_many_params": "limits",
    "unauthorized": "auth",
    "permission_denied": "auth",
    "decryption_failed": "decryption",
    "invalid_signature": "signature",
    "signature_expired": "expired",
    "tenant_disabled": "tenant",
    "unknown_key_id": "decryption",
    "unknown_tenant": "tenant",
    "tracking_url_not_found": "link",
    "tracking_url_disabled": "link",
    "body_too_large": "limits",
    "batch_too_large": "limits",
    "url_too_long": "limits",
    "headers_too_large": "limits",
    "unsupported_media_type": "media_type",
    "queue_full": "broker",
    "broker_unavailable": "broker",
    "shutting_down": "broker",
    "internal_error": "broker",
}
_EVENT_ENDPOINTS = frozenset({"/t", "/t/:tu_id", "/t/auto", "/p", "/i", "/batch", "/ingest"})


def build_app(service: IngestService, config: Config) -> Robyn:
    """Return the Robyn app with every ingest route bound to `service`."""
    app = Robyn(__file__, config=config)
    routes: list[tuple[str, str, Handler]] = [
        ("GET", "/t", service.click),
        ("GET", "/t/:tu_id", service.short_link),
        ("POST", "/t/auto", service.beacon),
        ("OPTIONS", "/t/auto", service.beacon_preflight),
        ("GET", "/p", service.postback),
        ("GET", "/i", service.impression),
        ("POST", "/batch", service.batch),
        ("POST", "/ingest", service.ingest),
        ("GET", "/health", service.health),
        ("GET", "/health/broker", service.health_broker),
        ("GET", "/metrics", service.metrics_text),
        ("GET", "/t.js", service.beacon_script),
    ]
    for method, path, handler in routes:
        app.add_route(method, path, _guard(service, path, handler), include_in_schema=False)
    add_unmatched_routes(
        app,
        ((method, path) for method, path, _ in routes),
        wrap=lambda handler: _guard(service, "unmatched", handler),
    )
    _call_guards_directly(app)
    return app


def _call_guards_directly(app: Robyn) -> None:
    """Let Robyn call each guard itself instead of through its per-request Python wrapper.

    Robyn 0.88 wraps every handler in Python code that, on each request, reads
    every request attribute (query, headers, body, URL, form data, files) to
    match them to handler parameters. The guards take the request alone and
    always return a Response, so that work is pure overhead. In a py-spy
    profile of an empty handler under wrk load (`bench/load/baseline_server.py`),
    the wrapper took about 40% of the time the event loop thread held the GIL.
    Robyn calls a
    `FunctionInfo` with one parameter and no dependencies as `handler(request)`,
    so each route's FunctionInfo is replaced by one that points at the guard.
    This reaches into Robyn's router (`Robyn.router.routes`, a list of named
    tuples), so pyproject.toml pins Robyn to one version. When that shape is
    missing, the routes keep Robyn's wrapper and still work.

    Robyn calls the handler on its worker thread, so the replacement also keeps
    that thread's Python thread state between requests (tracker.ingest.threadstate).
    """
    routes = getattr(getattr(app, "router", None), "routes", None)
    if not isinstance(routes, list):
        logger.warning("Robyn's route table was not found; handlers run through its wrapper.")
        return
    for index, route in enumerate(routes):
        function = route.function
        guard = getattr(function.handler, "__wrapped__", None)
        if not function.is_async or getattr(guard, "_ingest_guard", False) is not True:
            continue
        handler = keeping_thread_state(guard)
        routes[index] = route._replace(function=FunctionInfo(handler, True, 1, {}, {}))


def _guard(service: IngestService, endpoint: str, handler: Handler) -> Handler:
    max_header_bytes = service.settings.max_header_bytes
    metrics = service.metrics
    counts_events = endpoint in _EVENT_ENDPOINTS

    async def guarded(request: Request) -> Response:
        started = time.perf_counter()
        service.in_flight += 1
        try:
            if service.draining:
                raise IngestError(
                    "shutting_down", "the server is shutting down; retry on another instance", None
                )
            check_headers(request.headers.multi_items(), max_header_bytes)
            response = await handler(request)
        except IngestError as error:
            if counts_events:
                metrics.count_rejected(_REJECTION_REASON.get(error.code, "request"))
            logger.debug(
                "Request rejected.",
                extra={"endpoint": endpoint, "code": error.code, "field": error.field},
            )
            response = error_response(error)
        except Exception as error:
            logger.exception(
                "Request handler failed unexpectedly.",
                extra={"endpoint": endpoint, "error_type": type(error).__name__},
            )
            response = error_response(
                IngestError(
                    "internal_error", "the server could not process the request; retry later", None
                )
            )
        finally:
            service.in_flight -= 1
        metrics.observe(endpoint, response.status_code, time.perf_counter() - started)
        return response

    guarded._ingest_guard = True  # type: ignore[attr-defined]
    return guarded
