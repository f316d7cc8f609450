"""One visitor's journey in Chromium, from an SDK-built click URL to a matched conversion.

Runs `tracker serve`, `tracker api`, the event filter and the archiver (which writes
the cold tier the API reads) as subprocesses on free ports of 127.0.0.1, with a
tenant and an API key made through the CLI. Headless Chromium and httpx send bot user
agents, so the filter runs with FILTER_DROP_BOTS=false to let their events reach the
cold tier. The landing page and the partner site are
small stdlib servers on 127.0.0.1.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qsl, urlsplit

import httpx
import pytest
from tracker_sdk import ApiError, TrackerApi, build_postback_url, build_signed_click_url

from tests.sdk_integration.live_platform import LivePlatform, live_platform

pytestmark = [pytest.mark.browser, pytest.mark.slow]

TENANT = "journey1"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking"]
# Seconds between the click and the postback, so time_delta_ms is clearly non-zero.
CONVERSION_DELAY_S = 1.2
MATCH_TIMEOUT_S = 90.0


def serve_html(html_for_path) -> tuple[ThreadingHTTPServer, str]:
    """Start a stdlib HTTP server on 127.0.0.1 whose pages come from `html_for_path`."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = html_for_path(self.path).encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}"


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LivePlatform]:
    with live_platform(
        tmp_path_factory.mktemp("journey"), ARCHIVE_COMMIT_SECONDS="0.5", FILTER_DROP_BOTS="false"
    ) as running:
        running.create_tenant(TENANT, plan="pro")
        running.start("serve", "serve")
        running.start("api", "api", port_variable="API_PORT", health_path="/api/health")
        # Consumers have no HTTP health check; the match polling below waits for them.
        running.start(
            "event-filter",
            "consume",
            "event-filter",
            port_variable="CONSUMER_METRICS_PORT",
            health_path=None,
        )
        running.start(
            "archiver",
            "consume",
            "archiver",
            port_variable="CONSUMER_METRICS_PORT",
            health_path=None,
        )
        yield running


def wait_for_match(api: TrackerApi, click_id: str, **query: str):
    """Poll /api/events/match until the pair for `click_id` appears in the cold tier."""
    deadline = time.monotonic() + MATCH_TIMEOUT_S
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        try:
            result = api.match(hours=1, tier="cold", **query)
        except ApiError as error:
            last_error = error  # the Delta table does not exist before the first commit
        else:
            pairs = [
                pair
                for pair in result.pairs
                if pair.trigger_event.params.get("click_id") == click_id
                or pair.trigger_event.params.get("ad_click_id") == click_id
            ]
            if pairs:
                return result, pairs[0]
        time.sleep(0.5)
    raise AssertionError(
        f"no match for {click_id} within {MATCH_TIMEOUT_S} s; last error: {last_error}"
    )


def test_click_to_matched_postback(platform: LivePlatform) -> None:
    from playwright.sync_api import sync_playwright

    partner, partner_url = serve_html(
        lambda path: "<!doctype html><title>partner</title><p>Partner</p>"
    )
    serve_url = platform.urls["serve"]
    landing, landing_url = serve_html(
        lambda path: (
            f"""<!doctype html>
<html><head><title>Landing</title>
<script src="{serve_url}/t.js" data-key="{TENANT}" async defer></script></head>
<body><h1>Spring sale</h1><a id="partner" href="{partner_url}/offer">See the partner offer</a></body></html>"""
        )
    )

    # The advertiser's backend makes one link per visitor, with its own click_id signed in.
    visitor_click_id = uuid.uuid4().hex
    secret = bytes.fromhex(platform.tenants[TENANT]["hmac_secret"])
    click_url = build_signed_click_url(
        serve_url,
        secret,
        f"{landing_url}/spring?utm_source=mail",
        key_prefix=TENANT,
        params={"click_id": visitor_click_id, "sub1": "newsletter"},
        signed_params=["click_id"],
        expires_at=int(time.time()) + 3600,
    )

    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            page = browser.new_page()
            errors: list[str] = []
            page.on("pageerror", lambda error: errors.append(str(error)))

            response = page.goto(click_url)
            redirect = response.request.redirected_from
            assert redirect is not None
            assert redirect.response().status == 307
            landed = dict(parse_qsl(urlsplit(page.url).query))
            ad_click_id = landed["ad_click_id"]
            assert landed["utm_source"] == "mail"

            platform.wait_for_events(
                lambda e: (
                    e["event_type"] == "pageview" and e["params"].get("ad_click_id") == ad_click_id
                )
            )
            page.click("#partner")
            page.wait_for_url(f"{partner_url}/offer")
            platform.wait_for_events(
                lambda e: (
                    e["event_type"] == "outbound" and e["params"].get("ad_click_id") == ad_click_id
                )
            )
            assert errors == []
            browser.close()
    finally:
        landing.shutdown()
        partner.shutdown()

    # The advertiser's server reports the conversion with both ids it stored.
    time.sleep(CONVERSION_DELAY_S)
    postback = httpx.get(
        build_postback_url(
            serve_url,
            TENANT,
            {"click_id": visitor_click_id, "ad_click_id": ad_click_id, "amount": "49.90"},
            secret=secret,
            signed_params=["click_id", "ad_click_id"],
        )
    )
    assert postback.status_code == 200
    postback_id = postback.json()["event_id"]

    stored = {event["event_id"]: event for event in platform.stored_events()}
    click_event = stored[ad_click_id]
    assert click_event["event_type"] == "click"
    assert click_event["params"]["click_id"] == visitor_click_id
    beacon_events = [
        e
        for e in stored.values()
        if e["params"].get("ad_click_id") == ad_click_id and e["request_path"] == "/t/auto"
    ]
    assert {e["event_type"] for e in beacon_events} == {"pageview", "outbound"}
    outbound = next(e for e in beacon_events if e["event_type"] == "outbound")
    assert outbound["params"]["href"] == f"{partner_url}/offer"
    assert outbound["params"]["text"] == "See the partner offer"

    with TrackerApi(platform.urls["api"], platform.create_api_key(TENANT)) as api:
        result, pair = wait_for_match(
            api, visitor_click_id, trigger="click", result="postback", on="click_id"
        )
        assert pair.trigger_event.event_id == ad_click_id
        assert pair.result_event.event_id == postback_id
        assert pair.time_delta_ms == pair.result_event.timestamp - pair.trigger_event.timestamp
        assert pair.time_delta_ms >= CONVERSION_DELAY_S * 1000
        assert result.matched == 1
        assert result.match_rate == 1.0

        # The landing pageview, stitched by ad_click_id, pairs with the same postback.
        _, stitched = wait_for_match(
            api, ad_click_id, trigger="pageview", result="postback", on="ad_click_id"
        )
        assert stitched.result_event.event_id == postback_id
        assert stitched.trigger_event.request_path == "/t/auto"
