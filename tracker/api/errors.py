"""JSON error bodies of the platform API and the one table that maps error codes to statuses.

Every error response reads `{"error": {"code", "field", "message"}}`. `code` is a
stable snake_case string, `field` names the request field at fault (empty when
the request as a whole is wrong) and `message` says what to change.
"""

from __future__ import annotations

import logging

from tracker.errors import (
    AuthenticationError,
    Conflict,
    NotFound,
    PermissionDenied,
    QueryError,
    RegistryError,
)

__all__ = ["STATUS_BY_CODE", "ApiError", "translate"]

logger = logging.getLogger(__name__)

STATUS_BY_CODE: dict[str, int] = {
    "unauthorized": 401,
    "forbidden": 403,
    "not_found": 404,
    "method_not_allowed": 405,
    "conflict": 409,
    "payload_too_large": 413,
    "unsupported_media_type": 415,
    "internal_error": 500,
    "query_timeout": 504,
    "tier_unavailable": 503,
}
"""Status of each code that is not 400; every other code is a 400 Bad Request."""

# QueryError codes of the query package that are not the caller's fault.
_QUERY_STATUS: dict[str, int] = {
    "tier_unavailable": 503,
    "tier_not_configured": 503,
    "query_timeout": 504,
    "too_many_groups": 422,
    "range_not_covered": 422,
}


class ApiError(Exception):
    """A request the API rejects: code, field at fault, message and HTTP status."""

    def __init__(self, code: str, field: str, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.field = field
        self.message = message
        self.status = status if status is not None else STATUS_BY_CODE.get(code, 400)

    def body(self) -> dict[str, dict[str, str]]:
        return {"error": {"code": self.code, "field": self.field, "message": self.message}}


def translate(error: Exception, *, field: str = "") -> ApiError:
    """Translate a product error raised below the API into the ApiError sent to the client.

    A ValueError of the registry modules starts with the field name and a colon,
    which becomes `field`; other invalid-input errors take `field` from the caller.
    """
    if isinstance(error, ApiError):
        return error
    if isinstance(error, AuthenticationError):
        return ApiError("unauthorized", "authorization", str(error))
    if isinstance(error, PermissionDenied):
        return ApiError("forbidden", "authorization", str(error))
    if isinstance(error, QueryError):
        status = _QUERY_STATUS.get(error.code, 400)
        return ApiError(error.code, error.field, str(error), status=status)
    if isinstance(error, NotFound):
        return ApiError("not_found", "", str(error))
    if isinstance(error, Conflict):
        return ApiError("conflict", "", str(error))
    if isinstance(error, RegistryError | ValueError):
        message = str(error)
        name, colon, _ = message.partition(":")
        if colon and name.isidentifier() and name.islower():
            return ApiError("invalid_field", name, message)
        return ApiError("invalid_field" if field else "invalid_request", field, message)
    raise TypeError(f"no API error for {type(error).__name__}") from error
