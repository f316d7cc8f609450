"""The beacon t.js in Debian's Chromium, sending to a real `tracker serve`.

Pages come from a small stdlib server on 127.0.0.1; a second one on another port is the
"other origin" that outbound links lead to. Events are read back from the platform's
local log, so each check sees the stored event, not just the request.
"""

from __future__ import annotations

import re
import threading
import time
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest

from tests.sdk_integration.live_platform import LivePlatform, live_platform

pytestmark = pytest.mark.browser

TENANT = "beacon1"
BEACON = Path(__file__).resolve().parents[2] / "beacon" / "t.js"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking"]

APP_JS = b"""
document.getElementById("custom").addEventListener("click", function () {
  window.customResult = window.tracker.track("add_to_cart", {sku: "A-1", qty: "2"});
});
document.getElementById("bad").addEventListener("click", function () {
  window.badResult = [window.tracker.track("no spaces"), window.tracker.track(null)];
});
"""


class PageServer:
    """Serves test pages on 127.0.0.1; `tracker_url` is where the beacon sends events."""

    def __init__(self, tracker_url: str, other_origin: str = "") -> None:
        self.tracker_url = tracker_url
        self.other_origin = other_origin
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                status, headers, body = owner.render(self.path)
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                pass

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._httpd.server_address[1]}"
        threading.Thread(target=self._httpd.serve_forever, args=(0.05,), daemon=True).start()

    def render(self, path: str) -> tuple[int, dict[str, str], bytes]:
        parts = urlsplit(path)
        if parts.path == "/t.js":
            return 200, {"Content-Type": "application/javascript"}, BEACON.read_bytes()
        if parts.path == "/app.js":
            return 200, {"Content-Type": "application/javascript"}, APP_JS
        if parts.path == "/away":
            return (
                200,
                {"Content-Type": "text/html"},
                b"<!doctype html><title>away</title><p>Left.</p>",
            )
        if not parts.path.startswith("/page/"):
            return 404, {"Content-Type": "text/plain"}, b"not found"

        variant = parts.path.removeprefix("/page/").split("/")[0]
        run = parse_qs(parts.query).get("run", [""])[0]
        headers = {"Content-Type": "text/html; charset=utf-8"}
        attributes = {
            "all": ' data-track="all"',
            "none": ' data-track="none"',
            "nospa": " data-no-spa",
        }.get(variant, "")
        key = "" if variant == "nokey" else f' data-key="{TENANT}"'
        src = f"{self.tracker_url}/t.js"
        if variant == "csp":
            src = "/t.js"
            attributes = f' data-host="{self.tracker_url}"'
            headers["Content-Security-Policy"] = (
                f"default-src 'none'; script-src 'self'; connect-src {self.tracker_url}"
            )
        html = f"""<!doctype html>
<html><head><title>{variant}</title>
<script src="{src}"{key}{attributes} async defer></script></head>
<body>
<a id="out" href="{self.other_origin}/away?from={run}">Partner <b>offer</b></a>
<a id="in" href="/page/{variant}/next?run={run}">Next page</a>
<button id="custom">Buy</button><button id="bad">Bad</button>
<script src="/app.js"></script>
</body></html>"""
        return 200, headers, html.encode()

    def close(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LivePlatform]:
    with live_platform(tmp_path_factory.mktemp("beacon")) as running:
        running.create_tenant(TENANT)
        running.start("serve", "serve")
        yield running


@pytest.fixture(scope="module")
def pages(platform: LivePlatform) -> Iterator[PageServer]:
    other = PageServer(platform.urls["serve"])
    site = PageServer(platform.urls["serve"], other_origin=other.url)
    yield site
    site.close()
    other.close()


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield launched
        launched.close()


@pytest.fixture
def page(browser) -> Iterator[object]:
    context = browser.new_context()
    opened = context.new_page()
    opened.page_errors = []
    opened.console_errors = []
    opened.on("pageerror", lambda error: opened.page_errors.append(str(error)))
    opened.on(
        "console",
        lambda message: message.type == "error" and opened.console_errors.append(message.text),
    )
    yield opened
    context.close()


def run_events(
    platform: LivePlatform,
    run: str,
    count: int,
    event_type: str | None = None,
    timeout: float = 15.0,
) -> list[dict]:
    def belongs(event: dict) -> bool:
        if event["params"].get("key_prefix") != TENANT or run not in event["params"].get("url", ""):
            return False
        return event_type is None or event["event_type"] == event_type

    return platform.wait_for_events(belongs, count=count, timeout=timeout)


def settle(platform: LivePlatform, run: str) -> list[dict]:
    """Return the run's events once no new one has arrived for a moment."""
    seen = -1
    events: list[dict] = []
    while len(events) != seen:
        seen = len(events)
        time.sleep(0.7)
        events = [e for e in platform.stored_events() if run in e["params"].get("url", "")]
    return events


def new_run() -> str:
    return uuid.uuid4().hex[:12]


def test_beacon_pageview_on_load(platform, pages, page):
    run = new_run()
    url = f"{pages.url}/page/default?run={run}&ad_click_id=cid-{run}"
    page.goto(url)

    event = run_events(platform, run, 1, "pageview")[0]
    assert event["request_path"] == "/t/auto"
    assert event["params"]["url"] == url
    assert event["params"]["ad_click_id"] == f"cid-{run}"
    assert event["params"]["key_prefix"] == TENANT
    assert "referrer" not in event["params"]
    assert "Chrome" in event["user_agent"]
    assert event["ip"] == "127.0.0.1"
    assert page.page_errors == []


def test_beacon_spa_navigations(platform, pages, page):
    run = new_run()
    page.goto(f"{pages.url}/page/default?run={run}&ad_click_id=spa-{run}")
    run_events(platform, run, 1, "pageview")

    page.evaluate(f"history.pushState({{}}, '', '/page/default/a?run={run}')")
    page.evaluate(f"history.replaceState({{}}, '', '/page/default/b?run={run}')")
    page.evaluate(f"history.pushState({{}}, '', '/page/default/c?run={run}')")
    page.evaluate(f"history.pushState({{}}, '', '/page/default/c?run={run}')")
    page.evaluate("history.back()")
    page.evaluate("history.back()")
    page.wait_for_function("location.pathname === '/page/default/b'")

    run_events(platform, run, 5, "pageview")
    views = sorted(settle(platform, run), key=lambda e: e["event_id"])
    paths = [urlsplit(event["params"]["url"]).path for event in views]
    # The repeated pushState of c and the step back onto c do not change the URL.
    assert paths == [
        "/page/default",
        "/page/default/a",
        "/page/default/b",
        "/page/default/c",
        "/page/default/b",
    ]
    assert {event["params"]["ad_click_id"] for event in views} == {f"spa-{run}"}


def test_beacon_outbound_click_leaves_page(platform, pages, page):
    run = new_run()
    page.goto(f"{pages.url}/page/default?run={run}&ad_click_id=out-{run}")
    run_events(platform, run, 1, "pageview")

    page.click("#out")
    page.wait_for_url(f"{pages.other_origin}/away?from={run}")

    event = run_events(platform, run, 1, "outbound")[0]
    assert event["params"]["href"] == f"{pages.other_origin}/away?from={run}"
    assert event["params"]["text"] == "Partner offer"
    assert event["params"]["ad_click_id"] == f"out-{run}"


def test_beacon_ignores_internal_links_by_default(platform, pages, page):
    run = new_run()
    page.goto(f"{pages.url}/page/default?run={run}")
    page.click("#in")
    page.wait_for_url(f"**/page/default/next?run={run}")

    events = run_events(platform, run, 2, "pageview")
    types = {event["event_type"] for event in settle(platform, run)}
    assert types == {"pageview"}
    second = next(e for e in events if e["params"]["url"].endswith(f"/next?run={run}"))
    assert second["params"]["referrer"] == f"{pages.url}/page/default?run={run}"


def test_beacon_track_all_records_internal_links(platform, pages, page):
    run = new_run()
    page.goto(f"{pages.url}/page/all?run={run}")
    run_events(platform, run, 1, "pageview")
    page.click("#in")

    event = run_events(platform, run, 1, "link_click")[0]
    assert event["params"]["href"] == f"{pages.url}/page/all/next?run={run}"
    assert event["params"]["text"] == "Next page"


def test_beacon_track_none_skips_clicks(platform, pages, page):
    run = new_run()
    page.goto(f"{pages.url}/page/none?run={run}")
    run_events(platform, run, 1, "pageview")
    page.click("#out")
    page.wait_for_url(f"{pages.other_origin}/away?from={run}")

    assert [event["event_type"] for event in settle(platform, run)] == ["pageview"]


def test_beacon_no_spa_ignores_history(platform, pages, page):
    run = new_run()
    page.goto(f"{pages.url}/page/nospa?run={run}")
    run_events(platform, run, 1, "pageview")
    page.evaluate(f"history.pushState({{}}, '', '/page/nospa/a?run={run}')")

    assert len(settle(platform, run)) == 1


def test_beacon_custom_events(platform, pages, page):
    run = new_run()
    page.goto(f"{pages.url}/page/default?run={run}&ad_click_id=c-{run}")
    run_events(platform, run, 1, "pageview")
    page.click("#custom")
    page.click("#bad")

    event = run_events(platform, run, 1, "add_to_cart")[0]
    assert event["params"]["sku"] == "A-1"
    assert event["params"]["qty"] == "2"
    assert event["params"]["ad_click_id"] == f"c-{run}"
    assert page.evaluate("window.customResult") is True
    assert page.evaluate("window.badResult") == [False, False]
    assert page.page_errors == []


def test_beacon_works_under_strict_csp(platform, pages, page):
    run = new_run()
    page.goto(f"{pages.url}/page/csp?run={run}&ad_click_id=csp-{run}")
    run_events(platform, run, 1, "pageview")
    page.click("#custom")

    event = run_events(platform, run, 1, "add_to_cart")[0]
    assert event["params"]["ad_click_id"] == f"csp-{run}"
    violations = [text for text in page.console_errors if "Content Security Policy" in text]
    assert violations == []
    assert page.page_errors == []


@pytest.mark.parametrize(
    "sabotage",
    [
        "navigator.sendBeacon = function () { return false; };",
        "navigator.sendBeacon = function () { throw new Error('blocked'); };",
        "Object.defineProperty(navigator, 'sendBeacon', {value: undefined});",
    ],
)
def test_beacon_falls_back_to_fetch(platform, pages, page, sabotage):
    run = new_run()
    page.add_init_script(sabotage)
    page.goto(f"{pages.url}/page/default?run={run}")

    event = run_events(platform, run, 1, "pageview")[0]
    assert event["params"]["key_prefix"] == TENANT
    assert page.page_errors == []


def test_beacon_without_key_does_nothing(platform, pages, page):
    run = new_run()
    page.goto(f"{pages.url}/page/nokey?run={run}")
    page.click("#in")
    page.wait_for_url(f"**/page/nokey/next?run={run}")

    assert page.evaluate("typeof window.tracker") == "undefined"
    assert settle(platform, run) == []


def test_beacon_clips_oversized_params(platform, pages, page):
    run = new_run()
    page.goto(f"{pages.url}/page/default?run={run}")
    run_events(platform, run, 1, "pageview")
    result = page.evaluate("""() => {
        const params = {};
        for (let i = 0; i < 40; i++) params["k" + i] = "v".repeat(5000);
        return window.tracker.track("big_event", params);
    }""")

    assert result is True
    event = run_events(platform, run, 1, "big_event")[0]
    sent = {name: value for name, value in event["params"].items() if re.fullmatch(r"k\d+", name)}
    assert len(sent) == 32
    lengths = {len(value) for value in sent.values()}
    assert len(lengths) == 1
    assert 0 < lengths.pop() <= 2048
