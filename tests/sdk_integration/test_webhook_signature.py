"""The SDK's verify_webhook against the signer the platform's webhook consumer uses."""

from __future__ import annotations

import json
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from tracker_sdk import WebhookVerificationError, verify_webhook

from tracker.consumers.webhook_delivery import sign

SECRET = "whsec_" + "A" * 43


@settings(max_examples=200, deadline=None)
@given(body=st.binary(max_size=2000), timestamp=st.integers(0, 2**40))
def test_platform_signature_verifies(body, timestamp):
    headers = {
        "Tracker-Signature": sign(SECRET, timestamp, body),
        "Tracker-Timestamp": str(timestamp),
        "Tracker-Delivery-Id": "dlv_x",
    }
    delivery = verify_webhook(SECRET, body, headers, now=timestamp)
    assert delivery.timestamp == timestamp


def test_platform_signature_with_other_secret_fails():
    body = json.dumps({"delivery_id": "dlv_1", "event": {}}).encode()
    now = int(time.time())
    headers = {
        "Tracker-Signature": sign("whsec_" + "B" * 43, now, body),
        "Tracker-Timestamp": str(now),
        "Tracker-Delivery-Id": "dlv_1",
    }
    with pytest.raises(WebhookVerificationError, match="mismatch"):
        verify_webhook(SECRET, body, headers)
