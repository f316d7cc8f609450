"""TrackerApi against a real `tracker api`, with `tracker serve` following the links it manages."""

from __future__ import annotations

import time
from collections.abc import Iterator

import httpx
import pytest
from tracker_sdk import ApiError, AsyncTrackerApi, TrackerApi, build_short_url

from tests.sdk_integration.live_platform import LivePlatform, live_platform

TENANT = "sdkapi1"
OTHER_TENANT = "sdkapi2"


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LivePlatform]:
    with live_platform(tmp_path_factory.mktemp("sdk-api")) as running:
        running.create_tenant(TENANT)
        running.create_tenant(OTHER_TENANT)
        running.start("serve", "serve")
        running.start("api", "api", port_variable="API_PORT", health_path="/api/health")
        yield running


def redirect_target(
    platform: LivePlatform, tu_id: str, expected_status: int = 307
) -> httpx.Response:
    """Follow a short link until the ingest cache has picked up the latest change."""
    url = build_short_url(platform.urls["serve"], tu_id)
    deadline = time.monotonic() + 15
    response = httpx.get(url)
    while response.status_code != expected_status and time.monotonic() < deadline:
        time.sleep(0.2)
        response = httpx.get(url)
    return response


def test_tracking_url_lifecycle(platform):
    with TrackerApi(platform.urls["api"], platform.create_api_key(TENANT, "write")) as api:
        link = api.create_tracking_url(
            "https://shop.example/spring", name="spring", params={"c": "s1"}
        )
        assert link.active
        assert link.key_prefix == TENANT
        assert link.params == {"c": "s1"}
        assert link.tu_id in {item.tu_id for item in api.list_tracking_urls()}
        assert api.get_tracking_url(link.tu_id).destination == "https://shop.example/spring"

        first = redirect_target(platform, link.tu_id)
        assert first.headers["location"].startswith("https://shop.example/spring?ad_click_id=")

        rotated = api.rotate_tracking_url(link.tu_id, "https://shop.example/summer")
        assert rotated.destination == "https://shop.example/summer"
        deadline = time.monotonic() + 15
        response = redirect_target(platform, link.tu_id)
        while "/summer" not in response.headers.get("location", "") and time.monotonic() < deadline:
            time.sleep(0.2)
            response = redirect_target(platform, link.tu_id)
        assert response.headers["location"].startswith("https://shop.example/summer?ad_click_id=")

        disabled = api.disable_tracking_url(link.tu_id)
        assert not disabled.active
        gone = redirect_target(platform, link.tu_id, expected_status=404)
        assert 400 <= gone.status_code < 500


def test_api_error_names_code_and_field(platform):
    with TrackerApi(platform.urls["api"], platform.create_api_key(TENANT, "write")) as api:
        with pytest.raises(ApiError) as invalid:
            api.create_tracking_url("javascript:alert(1)")
        with pytest.raises(ApiError) as missing:
            api.get_tracking_url("tu_00000000-0000-7000-8000-000000000000")
        with pytest.raises(ApiError) as bad_query:
            api.stats(hours="many")

    assert invalid.value.status == 400
    assert invalid.value.field == "destination"
    assert missing.value.status == 404
    assert bad_query.value.status in (400, 422)
    assert bad_query.value.field == "hours"


def test_api_rejects_bad_key(platform):
    bad_key = "trk_000000000000_" + "A" * 43
    with TrackerApi(platform.urls["api"], bad_key) as api, pytest.raises(ApiError) as caught:
        api.list_tracking_urls()
    assert caught.value.status == 401


def test_api_keeps_tenants_apart(platform):
    with TrackerApi(platform.urls["api"], platform.create_api_key(OTHER_TENANT, "write")) as other:
        foreign = other.create_tracking_url("https://other.example/")
    with TrackerApi(platform.urls["api"], platform.create_api_key(TENANT, "read")) as api:
        assert foreign.tu_id not in {item.tu_id for item in api.list_tracking_urls()}
        with pytest.raises(ApiError) as caught:
            api.get_tracking_url(foreign.tu_id)
    assert caught.value.status in (403, 404)


async def test_async_api_lists_links(platform):
    key = platform.create_api_key(TENANT, "write")
    async with AsyncTrackerApi(platform.urls["api"], key) as api:
        link = await api.create_tracking_url("https://shop.example/async")
        fetched = await api.get_tracking_url(link.tu_id)
    assert fetched.destination == "https://shop.example/async"
