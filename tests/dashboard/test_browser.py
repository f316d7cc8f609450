"""The dashboard in headless Chromium against `tracker up`: every page, errors, layout and schemes."""

from __future__ import annotations

import re
import time
import uuid

import httpx
import pytest
from playwright.sync_api import expect

from tests.dashboard.conftest import BROWSER_UA, Platform, screenshot, send_postback, sign_in

pytestmark = pytest.mark.browser

PHONE = {"width": 390, "height": 844}
EVENT_TIMEOUT_MS = 20_000
PAGES = ("Live", "Charts", "Match", "Links", "Webhooks")


def _luminance(css_color: str) -> float:
    red, green, blue = (int(part) for part in re.findall(r"\d+", css_color)[:3])
    return (0.2126 * red + 0.7152 * green + 0.0722 * blue) / 255


def _open_tab(page, name: str) -> None:
    page.get_by_role("navigation").get_by_role("button", name=name).click()


def _wait_for_tab(page, name: str) -> None:
    # The live page keeps its EventSource open, so the network never goes idle there.
    if name == "Live":
        expect(page.locator("#live-status")).to_have_text("live", timeout=EVENT_TIMEOUT_MS)
    else:
        page.wait_for_load_state("networkidle")


def test_wrong_key_shows_error(platform: Platform, page_factory) -> None:
    page = page_factory()

    sign_in(page, platform, "trk_000000000000_not-a-real-key")

    alert = page.locator("#signin-error")
    expect(alert).to_be_visible()
    expect(alert).to_contain_text("unauthorized")
    expect(page.get_by_role("navigation")).to_be_hidden()
    screenshot(page, "signin-wrong-key")
    assert page.errors == [] or all("401" in error for error in page.errors)


def test_admin_key_is_rejected(platform: Platform, page_factory) -> None:
    page = page_factory()

    sign_in(page, platform, platform.admin_key)

    expect(page.locator("#signin-error")).to_contain_text("forbidden")


def test_empty_key_shows_error(platform: Platform, page_factory) -> None:
    page = page_factory()
    page.goto(platform.dashboard)

    page.get_by_role("button", name="Sign in").click()

    expect(page.locator("#signin-error")).to_contain_text("enter a tenant API key")


def test_key_kept_in_memory_only(platform: Platform, page_factory) -> None:
    page = page_factory()

    sign_in(page, platform)
    expect(page.locator("#live-status")).to_have_text("live", timeout=EVENT_TIMEOUT_MS)

    stored = page.evaluate("() => JSON.stringify([{...localStorage}, {...sessionStorage}])")
    assert platform.api_key not in stored
    assert page.context.cookies() == []
    page.reload()
    expect(page.get_by_label("Tenant API key")).to_be_visible()


def test_stay_signed_in_survives_reload(platform: Platform, page_factory) -> None:
    page = page_factory()

    sign_in(page, platform, stay=True)
    expect(page.locator("#live-status")).to_have_text("live", timeout=EVENT_TIMEOUT_MS)
    page.reload()

    expect(page.locator("#live-status")).to_have_text("live", timeout=EVENT_TIMEOUT_MS)
    assert page.evaluate("() => localStorage.length") == 0
    page.get_by_role("button", name="Sign out").click()
    assert page.evaluate("() => sessionStorage.length") == 0


def test_live_event_arrives(platform: Platform, page_factory) -> None:
    page = page_factory()
    sign_in(page, platform)
    expect(page.locator("#live-status")).to_have_text("live", timeout=EVENT_TIMEOUT_MS)
    expect(page.locator("#live-feed")).to_have_attribute("aria-live", "polite")
    tu_id = f"tu-{uuid.uuid4().hex[:8]}"

    send_postback(platform, click_id=f"c-{tu_id}", tu_id=tu_id)

    expect(page.locator("#live-feed li").first).to_contain_text(
        "postback", timeout=EVENT_TIMEOUT_MS
    )
    expect(page.locator("#ticker-links")).to_contain_text(tu_id)
    expect(page.locator("#ticker-types")).to_contain_text("postback")
    send_postback(platform, tu_id=tu_id)
    link_row = page.locator("#ticker-links tr", has_text=tu_id)
    expect(link_row).to_contain_text("2", timeout=EVENT_TIMEOUT_MS)
    screenshot(page, "live")
    assert page.errors == []


def test_charts_change_range_and_tier(platform: Platform, page_factory) -> None:
    send_postback(platform, tu_id="chart-link")
    page = page_factory()
    sign_in(page, platform)
    _open_tab(page, "Charts")
    meta = page.locator("#charts-meta")
    expect(meta).to_contain_text("answered by the", timeout=EVENT_TIMEOUT_MS)

    with page.expect_response(lambda response: "hours=168" in response.url):
        page.locator("#page-charts").get_by_label("Time range").select_option("168")
    page.get_by_label("Group by").select_option("day")
    expect(page.locator("#charts-bucket-name")).to_have_text("day")
    expect(page.locator("#charts-time svg rect.bar").first).to_be_visible(timeout=EVENT_TIMEOUT_MS)
    expect(page.locator("#charts-breakdown")).to_contain_text("chart-link")

    with page.expect_response(lambda response: "tier=cold" in response.url):
        page.locator("#page-charts").get_by_label("Tier").select_option("cold")
    expect(meta).to_contain_text("cold tier", timeout=EVENT_TIMEOUT_MS)
    screenshot(page, "charts")
    assert page.errors == []


def test_charts_show_api_error(platform: Platform, page_factory) -> None:
    page = page_factory()
    sign_in(page, platform)
    _open_tab(page, "Charts")

    # No HOT_DSN is set, so the hot tier is not configured.
    page.locator("#page-charts").get_by_label("Tier").select_option("hot")

    expect(page.locator("#charts-error")).to_contain_text("tier_", timeout=EVENT_TIMEOUT_MS)
    page.locator("#page-charts").get_by_label("Tier").select_option("")
    page.get_by_label("Breakdown by param key").fill("")
    page.get_by_role("button", name="Show").click()
    expect(page.locator("#charts-error")).to_be_hidden(timeout=EVENT_TIMEOUT_MS)
    screenshot(page, "charts-error-cleared")


def test_match_view(platform: Platform, page_factory, api: httpx.Client) -> None:
    click_id = f"m-{uuid.uuid4().hex[:8]}"
    signed = api.post("/api/tracking-urls/sign", json={"destination": "https://example.com/m"})
    click = httpx.get(
        signed.json()["signed_url"] + f"&click_id={click_id}",
        headers={"User-Agent": BROWSER_UA},
        timeout=10,
    )
    assert click.status_code == 307
    send_postback(platform, click_id=click_id)
    page = page_factory()
    sign_in(page, platform)
    _open_tab(page, "Match")

    matched = page.locator("#match-summary div", has_text="Matched").locator("dd")
    deadline = time.monotonic() + 30
    while True:
        page.get_by_role("button", name="Match", exact=True).last.click()
        expect(matched).to_be_visible(timeout=EVENT_TIMEOUT_MS)
        if matched.inner_text() != "0" or time.monotonic() > deadline:
            break
        time.sleep(1)  # the archive commits once a second

    assert int(matched.inner_text()) >= 1
    expect(page.locator("#match-summary")).to_contain_text("Match rate")
    expect(page.locator("#match-summary")).to_contain_text("p99")
    expect(page.locator("#match-histogram svg rect.bar").first).to_be_visible()
    screenshot(page, "match")


def test_match_rejects_same_types(platform: Platform, page_factory) -> None:
    page = page_factory()
    sign_in(page, platform)
    _open_tab(page, "Match")

    page.get_by_label("Result event type").fill("click")
    page.get_by_role("button", name="Match", exact=True).last.click()

    expect(page.locator("#match-error")).to_contain_text("invalid_match", timeout=EVENT_TIMEOUT_MS)


def test_links_create_rotate_disable(platform: Platform, page_factory, api: httpx.Client) -> None:
    page = page_factory()
    sign_in(page, platform)
    _open_tab(page, "Links")
    name = f"spring-{uuid.uuid4().hex[:6]}"

    page.get_by_label("Destination").first.fill("https://example.com/old")
    page.get_by_label("Name", exact=True).fill(name)
    page.get_by_role("button", name="Create").click()
    link_row = page.locator("#links-table tr", has_text=name)
    expect(link_row).to_contain_text("https://example.com/old")
    tu_id = link_row.get_attribute("data-tu-id")

    link_row.get_by_label(f"New destination for {tu_id}").fill("https://example.com/new")
    link_row.get_by_role("button", name="Rotate").click()
    expect(link_row).to_contain_text("https://example.com/new")
    assert api.get(f"/api/tracking-urls/{tu_id}").json()["destination"] == "https://example.com/new"
    screenshot(page, "links")

    link_row.get_by_role("button", name="Disable").click()
    expect(link_row).to_contain_text("disabled")
    assert api.get(f"/api/tracking-urls/{tu_id}").json()["status"] == "disabled"
    link_row.get_by_role("button", name="Enable").click()
    expect(link_row).to_contain_text("active")


def test_links_rotate_needs_destination(
    platform: Platform, page_factory, api: httpx.Client
) -> None:
    created = api.post("/api/tracking-urls", json={"destination": "https://example.com/keep"})
    tu_id = created.json()["tu_id"]
    page = page_factory()
    sign_in(page, platform)
    _open_tab(page, "Links")
    link_row = page.locator(f'#links-table tr[data-tu-id="{tu_id}"]')

    link_row.get_by_role("button", name="Rotate").click()
    expect(page.locator("#links-error")).to_contain_text("enter the new destination")
    link_row.get_by_label(f"New destination for {tu_id}").fill("ftp://example.com/")
    link_row.get_by_role("button", name="Rotate").click()

    expect(page.locator("#links-error")).to_contain_text("invalid_field")
    assert (
        api.get(f"/api/tracking-urls/{tu_id}").json()["destination"] == "https://example.com/keep"
    )


def test_links_copy_signed_url(platform: Platform, page_factory) -> None:
    page = page_factory()
    sign_in(page, platform)
    _open_tab(page, "Links")

    page.locator("#sign-destination").fill("https://example.com/signed")
    page.get_by_role("button", name="Build URLs").click()
    expect(page.locator("#sign-signed")).to_have_value(re.compile(r"/t\?url=.*&sig="))
    expect(page.locator("#sign-encrypted")).to_have_value(re.compile(r"/t\?d="))
    page.get_by_role("button", name="Copy signed URL").click()
    expect(page.locator("#sign-status")).to_contain_text("Copied")

    copied = page.evaluate("() => navigator.clipboard.readText()")
    click = httpx.get(copied, headers={"User-Agent": BROWSER_UA}, timeout=10)
    assert click.status_code == 307
    assert click.headers["location"].startswith("https://example.com/signed")
    screenshot(page, "links-signed")


def test_webhooks_dead_letter_replay(platform: Platform, page_factory, api: httpx.Client) -> None:
    created = api.post(
        "/api/webhooks", json={"url": platform.webhook_sink, "event_types": ["postback"]}
    )
    assert created.status_code == 201, created.text
    endpoint_id = created.json()["endpoint"]["endpoint_id"]
    # The consumer reloads endpoints every half second, so postbacks repeat until one matches.
    deadline = time.monotonic() + 45
    dead: list = []
    while not dead and time.monotonic() < deadline:
        send_postback(platform, note="webhook")
        time.sleep(1)
        listed = api.get("/api/webhook-dead-letters", params={"endpoint_id": endpoint_id})
        dead = listed.json()["deliveries"]
    assert dead, "no dead letter within 45 s"
    page = page_factory()
    sign_in(page, platform)
    _open_tab(page, "Webhooks")

    expect(page.locator("#webhooks-table")).to_contain_text(platform.webhook_sink)
    page.get_by_role("button", name=f"Show deliveries to {platform.webhook_sink}").first.click()
    expect(page.locator("#deliveries-table")).to_contain_text(dead[0]["event_id"])
    dead_row = page.locator("#dead-table tr", has_text=dead[0]["event_id"])
    expect(dead_row).to_be_visible()
    screenshot(page, "webhooks")
    dead_row.get_by_role("button", name="Replay").click()

    expect(page.locator("#replay-status")).to_contain_text("queued again")
    delivery = api.get(f"/api/webhooks/{endpoint_id}/deliveries", params={"limit": 1}).json()[
        "deliveries"
    ][0]
    assert delivery["delivery_id"] == dead[0]["delivery_id"]
    api.delete(f"/api/webhooks/{endpoint_id}")


def test_empty_states_shown(platform: Platform, page_factory, api: httpx.Client) -> None:
    tenant = f"e{uuid.uuid4().hex[:6]}"
    admin = {"Authorization": f"Bearer {platform.admin_key}"}
    created_tenant = httpx.post(
        f"{platform.api}/api/tenants", json={"key_prefix": tenant}, headers=admin
    )
    assert created_tenant.status_code == 201, created_tenant.text
    key = created_tenant.json()["api_key"]
    page = page_factory()
    sign_in(page, platform, key)

    expect(page.get_by_text("Waiting for events.")).to_be_visible(timeout=EVENT_TIMEOUT_MS)
    _open_tab(page, "Links")
    expect(page.get_by_text("No tracking URLs yet.")).to_be_visible()
    expect(page.locator("#links-table")).to_be_hidden()
    _open_tab(page, "Webhooks")
    expect(page.get_by_text("No webhook endpoints.")).to_be_visible()
    expect(page.get_by_text("No dead letters.")).to_be_visible()
    _open_tab(page, "Charts")
    expect(page.locator("#charts-time")).to_contain_text("No events in this range.")
    screenshot(page, "empty-charts")


def test_keyboard_sign_in_and_focus(platform: Platform, page_factory) -> None:
    page = page_factory()
    page.goto(platform.dashboard)
    expect(page.get_by_label("Tenant API key")).to_be_focused()

    page.keyboard.type(platform.api_key)
    page.keyboard.press("Tab")
    expect(page.get_by_label("Stay signed in")).to_be_focused()
    page.keyboard.press("Tab")
    expect(page.get_by_role("button", name="Sign in")).to_be_focused()
    outline = page.evaluate("() => getComputedStyle(document.activeElement).outlineStyle")
    assert outline != "none"
    page.keyboard.press("Enter")

    expect(page.get_by_role("navigation")).to_be_visible()
    page.get_by_role("button", name="Charts").focus()
    page.keyboard.press("Enter")
    expect(page.get_by_role("button", name="Charts")).to_have_attribute("aria-current", "page")
    assert page.locator("div[onclick], span[onclick]").count() == 0


@pytest.mark.parametrize("tab", PAGES)
def test_phone_width_layout(platform: Platform, page_factory, tab: str) -> None:
    page = page_factory(viewport=PHONE, is_mobile=True, has_touch=True)
    sign_in(page, platform)
    _open_tab(page, tab)
    _wait_for_tab(page, tab)

    width = page.evaluate("() => document.documentElement.scrollWidth")
    assert width <= PHONE["width"], f"{tab} page is {width} px wide at phone width"
    screenshot(page, f"phone-{tab.lower()}")


def test_dark_scheme(platform: Platform, page_factory) -> None:
    send_postback(platform, tu_id="dark-link")
    page = page_factory(color_scheme="dark")
    sign_in(page, platform)
    _open_tab(page, "Charts")
    expect(page.locator("#charts-meta")).to_contain_text("answered by", timeout=EVENT_TIMEOUT_MS)

    background = page.evaluate("() => getComputedStyle(document.body).backgroundColor")
    text = page.evaluate("() => getComputedStyle(document.body).color")
    assert _luminance(background) < 0.2
    assert _luminance(text) > 0.8
    screenshot(page, "dark-charts")
    _open_tab(page, "Links")
    screenshot(page, "dark-links")


def test_light_scheme(platform: Platform, page_factory) -> None:
    page = page_factory(color_scheme="light")
    page.goto(platform.dashboard)

    background = page.evaluate("() => getComputedStyle(document.body).backgroundColor")
    assert _luminance(background) > 0.8
    screenshot(page, "signin")


def test_no_csp_violations(platform: Platform, page_factory) -> None:
    page = page_factory()
    violations: list[str] = []
    page.on(
        "console",
        lambda message: (
            "Content Security Policy" in message.text and violations.append(message.text)
        ),
    )
    sign_in(page, platform)
    expect(page.locator("#live-status")).to_have_text("live", timeout=EVENT_TIMEOUT_MS)

    for tab in PAGES:
        _open_tab(page, tab)
        _wait_for_tab(page, tab)

    assert violations == []
