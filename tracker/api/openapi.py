"""The OpenAPI 3.1 document of the platform API, built from the same route table that serves requests."""

from __future__ import annotations

import re
from typing import Any

from tracker import __version__
from tracker.api.routing import Context, Reply, Route

__all__ = ["build_document", "openapi_route"]

_PATH_PARAM = re.compile(r"\{([a-z_]+)\}")

ERROR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["code", "field", "message"],
            "properties": {
                "code": {"type": "string", "description": "Stable snake_case reason"},
                "field": {
                    "type": "string",
                    "description": "Request field at fault, empty for the whole request",
                },
                "message": {"type": "string"},
            },
        }
    },
}

_ERROR_TEXT = {
    400: "Invalid request; the error names the field",
    401: "Missing, malformed, unknown or revoked API key",
    403: "The key's scope or kind does not allow this request",
    404: "No such resource for the caller's tenant",
    409: "The change conflicts with stored state",
    413: "The body is larger than API_MAX_BODY_BYTES",
    422: "The query is valid but the tier cannot answer it",
    503: "A tier or the registry is unavailable",
    504: "The query timed out",
}


def _path_schemas() -> dict[str, dict[str, Any]]:
    from tracker.api.routes import analytics, health, keys, tenants, tracking_urls, webhooks

    merged: dict[str, dict[str, Any]] = {}
    for module in (analytics, health, keys, tenants, tracking_urls, webhooks):
        merged.update(module.PATH_SCHEMAS)
    return merged


def _json_content(schema: dict[str, Any]) -> dict[str, Any]:
    return {"application/json": {"schema": schema}}


def _operation(route: Route, path_schemas: dict[str, dict[str, Any]]) -> dict[str, Any]:
    parameters: list[dict[str, Any]] = [
        {
            "name": name,
            "in": "path",
            "required": True,
            "schema": path_schemas.get(name, {"type": "string"}),
        }
        for name in _PATH_PARAM.findall(route.path)
    ]
    for param in route.query:
        schema = {"type": "array", "items": param.schema} if param.repeated else param.schema
        entry: dict[str, Any] = {
            "name": param.name,
            "in": "query",
            "required": param.required,
            "description": param.description,
            "schema": schema,
        }
        if param.repeated:
            entry.update(style="form", explode=True)
        parameters.append(entry)

    responses: dict[str, Any] = {
        str(route.status): {"description": "Success", "content": _json_content(route.response)},
    }
    error_statuses = {400, *route.errors}
    if route.scope is not None:
        error_statuses |= {401, 403}
    if route.body is not None:
        error_statuses.add(413)
    for status in sorted(error_statuses):
        responses[str(status)] = {
            "description": _ERROR_TEXT.get(status, "Error"),
            "content": _json_content({"$ref": "#/components/schemas/Error"}),
        }

    operation: dict[str, Any] = {
        "operationId": f"{route.method.lower()}_{route.path.strip('/').replace('/', '_').replace('{', '').replace('}', '').replace('-', '_')}",
        "summary": route.summary,
        "tags": [route.tag],
        "parameters": parameters,
        "responses": responses,
    }
    if route.scope is None:
        operation["security"] = []
    else:
        operation["description"] = f"Needs a {route.scope} key" + (
            " of a tenant (admin keys are rejected)." if route.tenant_only else "."
        )
    if route.body is not None:
        operation["requestBody"] = {"required": True, "content": _json_content(route.body)}
    return operation


def build_document(routes: list[Route]) -> dict[str, Any]:
    """Return the OpenAPI 3.1 document describing `routes`."""
    path_schemas = _path_schemas()
    paths: dict[str, dict[str, Any]] = {}
    for route in routes:
        paths.setdefault(route.path, {})[route.method.lower()] = _operation(route, path_schemas)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "tracker platform API",
            "version": __version__,
            "description": (
                "Tenant management, API keys, tracking URLs, webhooks and analytics. Send the key as"
                " `Authorization: Bearer trk_...`. Every error body is"
                ' `{"error": {"code", "field", "message"}}`.'
            ),
        },
        "security": [{"bearer": []}],
        "paths": paths,
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": {"Error": ERROR_SCHEMA},
        },
    }


def openapi_route(routes: list[Route]) -> Route:
    """Return the route that serves the document of `routes` (itself included)."""
    document: dict[str, Any] = {}

    async def serve(context: Context) -> Reply:
        return 200, document

    route = Route("GET", "/api/openapi.json", serve, None, "This OpenAPI document", "meta")
    document.update(build_document([*routes, route]))
    return route
