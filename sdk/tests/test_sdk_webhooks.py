"""verify_webhook on signed, tampered, stale and malformed deliveries."""

from __future__ import annotations

import hashlib
import hmac

import pytest
from tracker_sdk import WebhookVerificationError, verify_webhook

SECRET = "whsec_test"
BODY = b'{"event_id":"0190","event_type":"click","params":{"key_prefix":"acme1"}}'
NOW = 1_800_000_000


def signed_headers(
    body: bytes = BODY, secret: str = SECRET, timestamp: int = NOW
) -> dict[str, str]:
    digest = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return {
        "Tracker-Signature": f"v1={digest}",
        "Tracker-Timestamp": str(timestamp),
        "Tracker-Delivery-Id": "dlv_1",
    }


def test_webhook_valid_delivery():
    delivery = verify_webhook(SECRET, BODY, signed_headers(), now=NOW)
    assert delivery.delivery_id == "dlv_1"
    assert delivery.timestamp == NOW


def test_webhook_headers_case_insensitive():
    headers = {name.lower(): value for name, value in signed_headers().items()}
    assert verify_webhook(SECRET.encode(), BODY.decode(), headers, now=NOW).timestamp == NOW


def test_webhook_accepts_any_listed_signature():
    headers = signed_headers()
    headers["Tracker-Signature"] = "v0=abc v1=" + "0" * 64 + " " + headers["Tracker-Signature"]
    assert verify_webhook(SECRET, BODY, headers, now=NOW).delivery_id == "dlv_1"


@pytest.mark.parametrize(
    ("body", "headers", "message"),
    [
        (BODY + b" ", signed_headers(), "mismatch"),
        (BODY, signed_headers(secret="other"), "mismatch"),
        (BODY, signed_headers(timestamp=NOW - 301), "tolerance"),
        (BODY, signed_headers(timestamp=NOW + 301), "tolerance"),
        (BODY, {**signed_headers(), "Tracker-Timestamp": str(NOW + 1)}, "mismatch"),
        (BODY, {**signed_headers(), "Tracker-Timestamp": "soon"}, "Timestamp"),
        (BODY, {**signed_headers(), "Tracker-Timestamp": "-5"}, "Timestamp"),
        (BODY, {**signed_headers(), "Tracker-Signature": "v0=abc"}, "no v1"),
        (BODY, {**signed_headers(), "Tracker-Signature": ""}, "no v1"),
        (BODY, {"Tracker-Timestamp": str(NOW)}, "missing Tracker-Signature"),
        (BODY, {"Tracker-Signature": "v1=00"}, "missing Tracker-Timestamp"),
    ],
)
def test_webhook_rejects_bad_delivery(body, headers, message):
    with pytest.raises(WebhookVerificationError, match=message):
        verify_webhook(SECRET, body, headers, now=NOW)


def test_webhook_rejects_empty_secret():
    with pytest.raises(WebhookVerificationError, match="secret"):
        verify_webhook("", BODY, signed_headers(), now=NOW)


def test_webhook_tolerance_is_configurable():
    headers = signed_headers(timestamp=NOW - 1000)
    assert verify_webhook(SECRET, BODY, headers, tolerance=1200, now=NOW).timestamp == NOW - 1000


def test_webhook_error_is_value_error():
    with pytest.raises(ValueError):
        verify_webhook(SECRET, BODY, {}, now=NOW)


def test_webhook_body_delivery_id_must_match():
    body = b'{"delivery_id":"dlv_other","event":{}}'
    with pytest.raises(WebhookVerificationError, match="delivery_id"):
        verify_webhook(SECRET, body, signed_headers(body), now=NOW)


def test_webhook_body_delivery_id_matching():
    body = b'{"delivery_id":"dlv_1","event":{"event_id":"x"}}'
    assert verify_webhook(SECRET, body, signed_headers(body), now=NOW).delivery_id == "dlv_1"
