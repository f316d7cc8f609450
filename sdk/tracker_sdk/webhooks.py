"""Verification of webhook deliveries signed by the platform.

A delivery carries `Tracker-Timestamp` (Unix seconds), `Tracker-Delivery-Id` and
`Tracker-Signature: v1=<hex>`, where the hex is HMAC-SHA256 (RFC 2104) of
`f"{timestamp}.{body}"` under the webhook's whole secret (`whsec_...`). The signature
header may list several `<version>=<hex>` entries separated by spaces (commas are read
too); any `v1` entry that matches is enough.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from collections.abc import Mapping
from dataclasses import dataclass

from tracker_sdk.errors import WebhookVerificationError

SIGNATURE_HEADER = "tracker-signature"
TIMESTAMP_HEADER = "tracker-timestamp"
DELIVERY_ID_HEADER = "tracker-delivery-id"


@dataclass(frozen=True, slots=True)
class WebhookDelivery:
    """Identity of a delivery whose signature checked out."""

    delivery_id: str
    timestamp: int
    """Unix seconds from `Tracker-Timestamp`."""


def verify_webhook(
    secret: str | bytes,
    body: bytes | str,
    headers: Mapping[str, str],
    tolerance: int = 300,
    *,
    now: float | None = None,
) -> WebhookDelivery:
    """Check a delivery's signature in constant time and its timestamp against `tolerance`.

    `body` must be the raw request body exactly as received, before any JSON parsing.
    `tolerance` is in seconds, in both directions, and protects against replays. `now` is
    Unix seconds (default: the wall clock). Raises WebhookVerificationError on failure.
    """
    secret_bytes = secret.encode() if isinstance(secret, str) else bytes(secret)
    body_bytes = body.encode() if isinstance(body, str) else bytes(body)
    if not secret_bytes:
        raise WebhookVerificationError("the webhook secret is empty")
    lowered = {name.lower(): value for name, value in headers.items()}

    raw_timestamp = lowered.get(TIMESTAMP_HEADER)
    if raw_timestamp is None:
        raise WebhookVerificationError("missing Tracker-Timestamp header")
    if not raw_timestamp.strip().isdigit():
        raise WebhookVerificationError("invalid Tracker-Timestamp header: expected Unix seconds")
    timestamp = int(raw_timestamp.strip())

    raw_signature = lowered.get(SIGNATURE_HEADER)
    if raw_signature is None:
        raise WebhookVerificationError("missing Tracker-Signature header")
    candidates = _v1_signatures(raw_signature)
    if not candidates:
        raise WebhookVerificationError("invalid Tracker-Signature header: no v1= signature")

    message = str(timestamp).encode() + b"." + body_bytes
    expected = hmac.new(secret_bytes, message, hashlib.sha256).hexdigest().encode()
    matched = False
    for candidate in candidates:
        # Check every candidate so the time taken does not reveal which one matched.
        matched |= hmac.compare_digest(expected, candidate.encode())
    if not matched:
        raise WebhookVerificationError("signature mismatch: check the webhook secret")

    current = time.time() if now is None else now
    if abs(current - timestamp) > tolerance:
        raise WebhookVerificationError(
            f"timestamp is {int(current - timestamp)} s from now, outside the {tolerance} s tolerance"
        )
    delivery_id = lowered.get(DELIVERY_ID_HEADER, "")
    _check_body_delivery_id(body_bytes, delivery_id)
    return WebhookDelivery(delivery_id=delivery_id, timestamp=timestamp)


def _check_body_delivery_id(body: bytes, delivery_id: str) -> None:
    """Raise if the signed body names another delivery than the Tracker-Delivery-Id header."""
    try:
        document = json.loads(body)
    except ValueError:
        return
    in_body = document.get("delivery_id") if isinstance(document, dict) else None
    if in_body is not None and in_body != delivery_id:
        raise WebhookVerificationError(
            "delivery_id in the body does not match the Tracker-Delivery-Id header"
        )


def _v1_signatures(header: str) -> list[str]:
    signatures = []
    for part in header.replace(",", " ").split():
        scheme, _, value = part.strip().partition("=")
        if scheme == "v1" and value:
            signatures.append(value.strip().lower())
    return signatures
