"""Exceptions raised by tracker_sdk.

    TrackerSdkError
    +-- InvalidEventError(ValueError)        track() got an event the platform would reject
    +-- DeliveryError                        events could not be delivered (raise_errors=True)
    +-- ApiError                             the platform API returned an error
    +-- WebhookVerificationError(ValueError) a webhook delivery is not authentic or is stale

URL builders raise plain ValueError and TypeError on invalid arguments.
"""

from __future__ import annotations


class TrackerSdkError(Exception):
    """Root of every exception the SDK defines."""


class InvalidEventError(TrackerSdkError, ValueError):
    """An event fails the platform's rules; `field` names what is wrong."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field


class DeliveryError(TrackerSdkError):
    """Some events were not delivered; raised by flush() and close() with raise_errors=True."""

    def __init__(self, message: str, *, failed: int) -> None:
        super().__init__(message)
        self.failed = failed


class ApiError(TrackerSdkError):
    """An error response from the platform API, with its stable `code` and the `field` at fault."""

    def __init__(self, status: int, code: str, message: str, field: str | None = None) -> None:
        where = f" (field {field})" if field else ""
        super().__init__(f"HTTP {status} {code}{where}: {message}")
        self.status = status
        self.code = code
        self.field = field
        self.message = message


class WebhookVerificationError(TrackerSdkError, ValueError):
    """The delivery is not authentic, or its timestamp is outside the tolerance."""
