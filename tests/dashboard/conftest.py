"""Fixtures of the dashboard tests: `tracker up` on free ports and headless Debian Chromium."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.conftest import free_port
from tests.platform_up import run_up

CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts" / "dashboard"
BROWSER_UA = (
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 "
    "(KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36"
)


@dataclass(frozen=True)
class Platform:
    """Addresses of a running `tracker up` and the demo tenant's credentials."""

    ingest: str
    api: str
    sse: str
    key_prefix: str
    api_key: str
    admin_key: str
    webhook_sink: str

    @property
    def dashboard(self) -> str:
        return f"{self.api}/dashboard/"


# Package scope: the platform and the browser stop when the dashboard tests end. A sync
# Playwright left open keeps an event loop running in the main thread, which breaks the
# asyncio tests that run after this package.
@pytest.fixture(scope="package")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Platform]:
    """Start `tracker up` once for every dashboard test and stop it with SIGTERM afterwards."""
    data_dir = tmp_path_factory.mktemp("dashboard") / "data"
    # Nothing listens on this port, so every webhook delivery to it fails at once.
    sink_port = free_port()
    env = {
        "WEBHOOK_ALLOW_PRIVATE_NETWORKS": "true",
        "WEBHOOK_MAX_ATTEMPTS": "1",
        "WEBHOOK_BACKOFF_BASE_SECONDS": "0",
        "WEBHOOK_TIMEOUT_SECONDS": "2",
        "WEBHOOK_ENDPOINTS_REFRESH_SECONDS": "0.5",
    }
    with run_up(data_dir, env=env, unset=("SSE_ALLOWED_ORIGINS",)) as running:
        yield Platform(
            ingest=running.ingest_url,
            api=running.api_url,
            sse=running.sse_url,
            key_prefix=running.demo["key_prefix"],
            api_key=running.demo["api_key"],
            admin_key=running.demo["admin_api_key"],
            webhook_sink=f"http://127.0.0.1:{sink_port}/hook",
        )


@pytest.fixture(scope="package")
def api(platform: Platform) -> Iterator[httpx.Client]:
    """An HTTP client of the platform API with the demo tenant's write key."""
    headers = {"Authorization": f"Bearer {platform.api_key}"}
    with httpx.Client(base_url=platform.api, headers=headers, timeout=10) as client:
        yield client


@pytest.fixture(scope="package")
def chromium() -> Iterator[object]:
    from playwright.sync_api import sync_playwright

    assert Path(CHROMIUM).exists(), "install Debian's chromium: apt-get install -y chromium"
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"],
        )
        yield browser
        browser.close()


@pytest.fixture
def page_factory(chromium) -> Iterator[object]:
    """Open pages in fresh contexts; each page records console errors in `page.errors`."""
    contexts = []

    def open_page(**options):
        context = chromium.new_context(**options)
        context.grant_permissions(["clipboard-read", "clipboard-write"])
        contexts.append(context)
        page = context.new_page()
        page.errors = []
        page.on(
            "console", lambda message: message.type == "error" and page.errors.append(message.text)
        )
        page.on("pageerror", lambda error: page.errors.append(str(error)))
        return page

    yield open_page
    for context in contexts:
        context.close()


def screenshot(page, name: str) -> Path:
    """Save a full-page screenshot under tests/artifacts/dashboard/."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


def sign_in(page, platform: Platform, key: str | None = None, *, stay: bool = False) -> None:
    page.goto(platform.dashboard)
    page.get_by_label("Tenant API key").fill(key or platform.api_key)
    if stay:
        page.get_by_label("Stay signed in").check()
    page.get_by_role("button", name="Sign in").click()


def send_postback(platform: Platform, **params: str) -> str:
    """Send a postback with a browser User-Agent, so the event filter keeps it; return its id."""
    query = {"key_prefix": platform.key_prefix, **params}
    response = httpx.get(
        f"{platform.ingest}/p", params=query, headers={"User-Agent": BROWSER_UA}, timeout=10
    )
    assert response.status_code == 200, response.text
    return response.json()["event_id"]
