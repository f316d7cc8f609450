"""Error responses of the ingestion service: one table from stable codes to HTTP statuses.

Every error body reads `{"error": {"code": ..., "field": ..., "message": ...}}`.
Codes are stable snake_case identifiers that clients may branch on; messages
are for people and may change.
"""

from __future__ import annotations

import orjson
from robyn import Response

__all__ = ["STATUS_BY_CODE", "IngestError", "error_response"]

STATUS_BY_CODE: dict[str, int] = {
    # 400: the request is malformed.
    "ambiguous_click": 400,
    "duplicate_param": 400,
    "invalid_batch": 400,
    "invalid_destination": 400,
    "invalid_encoding": 400,
    "invalid_event": 400,
    "invalid_json": 400,
    "invalid_param": 400,
    "missing_param": 400,
    "param_too_long": 400,
    "too_many_params": 400,
    # 401 and 403: the caller is not allowed.
    "unauthorized": 401,
    "decryption_failed": 403,
    "invalid_signature": 403,
    "permission_denied": 403,
    "signature_expired": 403,
    "tenant_disabled": 403,
    "unknown_key_id": 403,
    "unknown_tenant": 403,
    # 404 and 410: the link does not exist or no longer works.
    "not_found": 404,
    "tracking_url_not_found": 404,
    "tracking_url_disabled": 410,
    # 405: wrong method on a known path.
    "method_not_allowed": 405,
    # 413, 414, 415, 431: size and type limits.
    "body_too_large": 413,
    "batch_too_large": 413,
    "url_too_long": 414,
    "unsupported_media_type": 415,
    "headers_too_large": 431,
    # 503: retry later; nothing was accepted.
    "queue_full": 503,
    "broker_unavailable": 503,
    "shutting_down": 503,
    "internal_error": 503,
}

_JSON_HEADERS = {"Content-Type": "application/json", "Cache-Control": "no-store"}
_RETRY_CODES = frozenset({"queue_full", "broker_unavailable", "shutting_down", "internal_error"})


class IngestError(Exception):
    """A request failure with its stable code, the field at fault and a message for people."""

    def __init__(self, code: str, message: str, field: str | None = None) -> None:
        super().__init__(message)
        if code not in STATUS_BY_CODE:
            raise KeyError(f"unknown error code {code!r}")
        self.code = code
        self.field = field
        self.message = message

    @property
    def status(self) -> int:
        return STATUS_BY_CODE[self.code]


def error_response(error: IngestError, extra_headers: dict[str, str] | None = None) -> Response:
    """Render an IngestError as its JSON response; 503s carry Retry-After."""
    body = orjson.dumps(
        {"error": {"code": error.code, "field": error.field, "message": error.message}}
    )
    headers = dict(_JSON_HEADERS)
    if error.code in _RETRY_CODES:
        headers["Retry-After"] = "1"
    if error.code == "unauthorized":
        headers["WWW-Authenticate"] = 'Bearer realm="tracker"'
    if extra_headers:
        headers.update(extra_headers)
    return Response(error.status, headers, body)
