"""Python SDK for tracker-platform: URL builders, batching event clients, API client, webhooks."""

from tracker_sdk._batching import ClientStats, RetryPolicy
from tracker_sdk._version import __version__
from tracker_sdk.api import AsyncTrackerApi, TrackerApi
from tracker_sdk.async_client import AsyncTrackerClient
from tracker_sdk.client import TrackerClient
from tracker_sdk.errors import (
    ApiError,
    DeliveryError,
    InvalidEventError,
    TrackerSdkError,
    WebhookVerificationError,
)
from tracker_sdk.models import Event, EventPage, MatchPair, MatchResult, Stats, TrackingUrl
from tracker_sdk.urls import (
    build_encrypted_click_url,
    build_impression_url,
    build_postback_url,
    build_short_url,
    build_signed_click_url,
)
from tracker_sdk.webhooks import WebhookDelivery, verify_webhook

__all__ = [
    "ApiError",
    "AsyncTrackerApi",
    "AsyncTrackerClient",
    "ClientStats",
    "DeliveryError",
    "Event",
    "EventPage",
    "InvalidEventError",
    "MatchPair",
    "MatchResult",
    "RetryPolicy",
    "Stats",
    "TrackerApi",
    "TrackerClient",
    "TrackerSdkError",
    "TrackingUrl",
    "WebhookDelivery",
    "WebhookVerificationError",
    "__version__",
    "build_encrypted_click_url",
    "build_impression_url",
    "build_postback_url",
    "build_short_url",
    "build_signed_click_url",
    "verify_webhook",
]
