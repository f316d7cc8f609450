"""SDK-built URLs and TrackerClient batches sent to a real `tracker serve` subprocess."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit

import httpx
import pytest
from tracker_sdk import (
    AsyncTrackerClient,
    RetryPolicy,
    TrackerClient,
    build_encrypted_click_url,
    build_impression_url,
    build_postback_url,
    build_short_url,
    build_signed_click_url,
)

from tests.sdk_integration.live_platform import LivePlatform, live_platform

TENANT = "sdkint1"


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LivePlatform]:
    data_dir = tmp_path_factory.mktemp("sdk-integration")
    with live_platform(data_dir) as running:
        running.create_tenant(TENANT)
        running.start("serve", "serve")
        yield running


@pytest.fixture
def http() -> Iterator[httpx.Client]:
    with httpx.Client(follow_redirects=False, timeout=10) as client:
        yield client


def serve_url(platform: LivePlatform) -> str:
    return platform.urls["serve"]


def secret(platform: LivePlatform) -> bytes:
    return bytes.fromhex(platform.tenants[TENANT]["hmac_secret"])


def ad_click_id(response: httpx.Response) -> str:
    assert response.status_code == 307, response.text
    return dict(parse_qsl(urlsplit(response.headers["location"]).query))["ad_click_id"]


def test_signed_click_redirects(platform, http):
    destination = "https://shop.example/landing?ref=mail"
    url = build_signed_click_url(
        serve_url(platform),
        secret(platform),
        destination,
        key_prefix=TENANT,
        params={"sub1": "news", "offer_id": "42"},
        signed_params=["offer_id"],
        expires_at=int(time.time()) + 600,
    )
    response = http.get(url)

    click_id = ad_click_id(response)
    assert response.headers["location"].startswith("https://shop.example/landing?ref=mail&")
    event = platform.wait_for_events(lambda e: e["event_id"] == click_id)[0]
    assert event["event_type"] == "click"
    assert event["params"]["sub1"] == "news"
    assert event["params"]["offer_id"] == "42"
    assert event["params"]["key_prefix"] == TENANT


def test_signed_click_tampered_param_rejected(platform, http):
    url = build_signed_click_url(
        serve_url(platform),
        secret(platform),
        "https://shop.example/",
        key_prefix=TENANT,
        params={"offer_id": "42"},
        signed_params=["offer_id"],
    )
    response = http.get(url.replace("offer_id=42", "offer_id=43"))

    assert 400 <= response.status_code < 500
    assert response.json()["error"]["code"] == "invalid_signature"


def test_expired_signed_click_rejected(platform, http):
    url = build_signed_click_url(
        serve_url(platform),
        secret(platform),
        "https://shop.example/",
        key_prefix=TENANT,
        expires_at=int(time.time()) - 5,
    )
    response = http.get(url)

    assert 400 <= response.status_code < 500
    assert response.json()["error"]["code"] == "signature_expired"


def test_encrypted_click_redirects(platform, http):
    key = bytes.fromhex(platform.tenants[TENANT]["aes_key"])
    url = build_encrypted_click_url(
        serve_url(platform),
        key,
        platform.tenants[TENANT]["aes_key_id"],
        "https://shop.example/hidden",
        key_prefix=TENANT,
        hidden_params={"payout": "1.25"},
        params={"sub1": "feed"},
    )
    response = http.get(url)

    click_id = ad_click_id(response)
    assert response.headers["location"].startswith("https://shop.example/hidden?ad_click_id=")
    event = platform.wait_for_events(lambda e: e["event_id"] == click_id)[0]
    assert event["params"]["payout"] == "1.25"
    assert event["params"]["sub1"] == "feed"


def test_short_url_redirects(platform, http):
    from tracker.registry.db import Registry
    from tracker.registry.tracking_urls import create_tracking_url

    registry = Registry(platform.data_dir / "registry.db")
    try:
        link = create_tracking_url(
            registry, TENANT, "https://shop.example/short", params={"c": "spring"}
        )
    finally:
        registry.close()

    deadline = time.monotonic() + 10
    response = http.get(build_short_url(serve_url(platform), link.tu_id, {"sub1": "x"}))
    while response.status_code == 404 and time.monotonic() < deadline:
        time.sleep(0.2)  # the ingest cache polls the registry
        response = http.get(build_short_url(serve_url(platform), link.tu_id, {"sub1": "x"}))

    click_id = ad_click_id(response)
    event = platform.wait_for_events(lambda e: e["event_id"] == click_id)[0]
    assert event["params"]["tu_id"] == link.tu_id
    assert event["params"]["sub1"] == "x"


def test_postback_and_impression_recorded(platform, http):
    postback = http.get(
        build_postback_url(serve_url(platform), TENANT, {"click_id": "c-77", "amount": "9.90"})
    )
    signed = http.get(
        build_postback_url(
            serve_url(platform),
            TENANT,
            {"click_id": "c-78"},
            secret=secret(platform),
            signed_params=["click_id"],
        )
    )
    impression = http.get(build_impression_url(serve_url(platform), TENANT, {"ad": "banner-1"}))

    assert postback.status_code == 200
    assert signed.status_code == 200
    assert impression.status_code == 200
    assert impression.headers["content-type"] == "image/gif"
    stored = platform.wait_for_events(
        lambda e: e["event_id"] in {postback.json()["event_id"], signed.json()["event_id"]}, count=2
    )
    assert {event["params"]["click_id"] for event in stored} == {"c-77", "c-78"}
    assert {event["event_type"] for event in stored} == {"postback"}


def test_signed_postback_with_wrong_secret_rejected(platform, http):
    response = http.get(
        build_postback_url(
            serve_url(platform),
            TENANT,
            {"click_id": "c-1"},
            secret=b"not-the-secret",
            signed_params=["click_id"],
        )
    )
    assert response.status_code in (400, 401, 403)
    assert response.json()["error"]["code"] == "invalid_signature"


def test_client_batch_lands_in_log(platform):
    run = uuid.uuid4().hex
    with TrackerClient(serve_url(platform), TENANT, batch_size=25, flush_interval=0.2) as client:
        ids = [
            client.track("signup", {"run": run, "n": str(n)}, user_agent="sdk-test/1")
            for n in range(60)
        ]

    assert client.stats.delivered == 60
    assert client.stats.failed == 0
    stored = platform.wait_for_events(lambda e: e["params"].get("run") == run, count=60)
    assert sorted(event["event_id"] for event in stored) == sorted(ids)
    assert {event["request_path"] for event in stored} == {"/batch"}
    assert {event["user_agent"] for event in stored} == {"sdk-test/1"}


def test_client_unknown_tenant_counted_rejected(platform):
    with TrackerClient(
        serve_url(platform), "nosuchtenant", batch_size=5, retry=RetryPolicy(max_retries=0)
    ) as client:
        for _ in range(5):
            client.track("signup")

    assert client.stats.rejected == 5
    assert client.stats.delivered == 0


async def test_async_client_batch_lands(platform):
    run = uuid.uuid4().hex
    async with AsyncTrackerClient(serve_url(platform), TENANT, batch_size=10) as client:
        ids = [await client.track("view", {"run": run}) for _ in range(15)]

    stored = platform.wait_for_events(lambda e: e["params"].get("run") == run, count=15)
    assert sorted(event["event_id"] for event in stored) == sorted(ids)


def test_resent_batch_keeps_event_ids(platform, http):
    run = uuid.uuid4().hex
    event = {
        "event_id": str(uuid.UUID(int=0x0190_0000_0000_7000_8000_0000_0000_0001 + 1)),
        "event_type": "retry_probe",
        "params": {"key_prefix": TENANT, "run": run},
    }
    for _ in range(2):
        response = http.post(f"{serve_url(platform)}/batch", json={"events": [event]})
        assert response.json()["accepted"] == 1

    stored = platform.wait_for_events(lambda e: e["params"].get("run") == run, count=2)
    # The log keeps both copies; sinks deduplicate on the shared event_id.
    assert {item["event_id"] for item in stored} == {event["event_id"]}


def test_live_platform_uses_private_data_dir(platform):
    assert Path(platform.env["TRACKER_DATA_DIR"]) == platform.data_dir
    assert (platform.data_dir / "registry.db").exists()
