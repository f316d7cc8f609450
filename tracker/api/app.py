"""Request dispatch of the platform API and its registration on a Robyn app.

Every request goes through `dispatch`: decode the path and query once,
authenticate, check scope and tenant, reject unknown parameters, run the
handler, and turn every product error into `{"error": {code, field, message}}`.
Anything else becomes a logged 500 with no detail in the body.
"""

from __future__ import annotations

import logging
import sys
import time
from typing import Any

import orjson

from tracker.api.errors import ApiError, translate
from tracker.api.params import decode_component, decode_query
from tracker.api.routes import all_routes
from tracker.api.routing import Context, Route, Services
from tracker.errors import TrackerError
from tracker.registry.api_keys import ApiKey, require_scope, verify_api_key
from tracker.unmatched import add_unmatched_routes

__all__ = ["JSON_HEADERS", "build_app", "dispatch"]

logger = logging.getLogger(__name__)

JSON_HEADERS = {"Content-Type": "application/json"}
BEARER = "bearer "


def _bearer_token(headers: Any) -> str:
    value = headers.get("authorization") or headers.get("Authorization") or ""
    if value[: len(BEARER)].lower() != BEARER:
        raise ApiError(
            "unauthorized", "authorization", "send the API key as 'Authorization: Bearer trk_...'"
        )
    return value[len(BEARER) :].strip()


def _authenticate(route: Route, services: Services, headers: Any) -> ApiKey:
    token = _bearer_token(headers)
    api_key = verify_api_key(services.registry, token, admin_key=services.settings.admin_key)
    assert route.scope is not None
    require_scope(api_key, route.scope)
    if route.tenant_only and api_key.key_prefix is None:
        raise ApiError(
            "forbidden",
            "authorization",
            "this endpoint acts on one tenant: use a read or write key of that tenant, not an admin key",
        )
    return api_key


def _body_bytes(request: Any, limit: int) -> bytes:
    body = request.body
    data = body.encode("utf-8") if isinstance(body, str) else bytes(body or b"")
    if len(data) > limit:
        raise ApiError(
            "payload_too_large",
            "body",
            f"the body is {len(data)} bytes, the maximum is {limit} (API_MAX_BODY_BYTES)",
        )
    return data


async def dispatch(
    route: Route, services: Services, request: Any
) -> tuple[int, bytes, ApiKey | None]:
    """Run one request through `route`; return status, JSON body and the caller's key."""
    api_key: ApiKey | None = None
    try:
        if route.scope is not None:
            api_key = _authenticate(route, services, request.headers)
        path = {
            name: decode_component(value, name)
            for name, value in (request.path_params or {}).items()
        }
        args = decode_query(request.query_params.to_dict())
        args.reject_unknown((param.name for param in route.query), prefixes=route.query_prefixes)
        raw_body = (
            _body_bytes(request, services.settings.max_body_bytes)
            if route.body is not None
            else b""
        )
        context = Context(services, route, args, path, raw_body, api_key)
        status, payload = await route.handler(context)
    except ApiError as error:
        return error.status, orjson.dumps(error.body()), api_key
    except (TrackerError, ValueError) as error:
        translated = translate(error)
        return translated.status, orjson.dumps(translated.body()), api_key
    except Exception:
        logger.exception("Request failed with an unexpected error.", extra={"route": route.path})
        error = ApiError(
            "internal_error",
            "",
            "the server failed to process this request; the error has been logged",
        )
        return error.status, orjson.dumps(error.body()), api_key
    return status, orjson.dumps(payload, option=orjson.OPT_NON_STR_KEYS), api_key


def _import_robyn() -> Any:
    # Robyn parses sys.argv when it is imported, because a default argument builds
    # its Config, and again in Config(). Both see an empty argument list here, so
    # Robyn neither rejects the `tracker api` options nor acts on --help or --version.
    saved = sys.argv
    sys.argv = [saved[0]]
    try:
        import robyn
        from robyn.argument_parser import Config

        config = Config()
    finally:
        sys.argv = saved
    config.disable_openapi = True  # /api/openapi.json is ours, built from the route table
    config.log_level = "WARNING"
    return robyn, config


def _make_handler(route: Route, services: Services, robyn: Any) -> Any:
    from robyn import Request

    async def handle(request: Request) -> Any:
        started = time.perf_counter()
        status, body, api_key = await dispatch(route, services, request)
        if services.settings.request_log:
            logger.info(
                "Request served.",
                extra={
                    "method": route.method,
                    "route": route.path,
                    "status": status,
                    "tenant": api_key.key_prefix if api_key is not None else None,
                    "key_id": api_key.key_id if api_key is not None else None,
                    "duration_ms": round((time.perf_counter() - started) * 1000, 3),
                },
            )
        return robyn.Response(status_code=status, headers=dict(JSON_HEADERS), description=body)

    handle.__name__ = f"handle_{route.method.lower()}_{route.path.strip('/').replace('/', '_')}"
    return handle


def build_app(services: Services, routes: list[Route] | None = None) -> Any:
    """Return a Robyn app serving every route plus /api/openapi.json."""
    from tracker.api.openapi import openapi_route
    from tracker.api.routes import dashboard

    robyn, config = _import_robyn()
    table = list(routes if routes is not None else all_routes())
    table.append(openapi_route(table))
    app = robyn.Robyn(__file__, config=config)
    for route in table:
        app.add_route(route.method, route.robyn_path, _make_handler(route, services, robyn))
    registered = [(route.method, route.robyn_path) for route in table]
    registered += dashboard.register(app, robyn)
    add_unmatched_routes(app, registered)
    return app
