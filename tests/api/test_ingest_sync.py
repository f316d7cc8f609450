"""Tests that tracking URL changes made through the API reach a running `tracker serve`.

Both processes share one registry file; the ingest service polls it every
REGISTRY_REFRESH_SECONDS (0.2 s here), so each change must show within a few
seconds. The ingest process is started with the ingest tests' own helpers.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from tests.api.conftest import ApiServer, create_tenant
from tests.conftest import free_port
from tests.ingest.conftest import server_env, start_server, stop_server, wait_healthy

PROPAGATION_TIMEOUT_SECONDS = 10.0


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ApiServer, str]]:
    """A `tracker api` and a `tracker serve` over the same data directory."""
    data_dir = tmp_path_factory.mktemp("platform")
    api = ApiServer(data_dir).start()
    port = free_port()
    log_path = data_dir / "serve.log"
    ingest = start_server(server_env(data_dir, port), log_path)
    try:
        wait_healthy("127.0.0.1", port, ingest, log_path)
        yield api, f"http://127.0.0.1:{port}"
    finally:
        stop_server(ingest)
        api.stop()


def _eventually(
    probe: Callable[[], httpx.Response], accept: Callable[[httpx.Response], bool]
) -> httpx.Response:
    deadline = time.monotonic() + PROPAGATION_TIMEOUT_SECONDS
    while True:
        answer = probe()
        if accept(answer) or time.monotonic() > deadline:
            return answer
        time.sleep(0.1)


def test_tracking_url_changes_reach_ingest(platform: tuple[ApiServer, str], tmp_path: Path) -> None:
    api, ingest_url = platform
    keys = create_tenant(api, "syncurl")
    with api.client(keys.write_key) as writer:
        tu_id = writer.post(
            "/api/tracking-urls", json={"destination": "https://first.example/landing"}
        ).json()["tu_id"]

    def click() -> httpx.Response:
        return httpx.get(f"{ingest_url}/t/{tu_id}", follow_redirects=False)

    created = _eventually(click, lambda answer: answer.status_code == 307)
    assert created.status_code == 307, created.text
    assert created.headers["location"].startswith("https://first.example/landing")

    with api.client(keys.write_key) as writer:
        assert (
            writer.patch(
                f"/api/tracking-urls/{tu_id}", json={"destination": "https://second.example/"}
            ).status_code
            == 200
        )
    rotated = _eventually(
        click,
        lambda answer: answer.headers.get("location", "").startswith("https://second.example/"),
    )
    assert rotated.headers["location"].startswith("https://second.example/")

    with api.client(keys.write_key) as writer:
        assert (
            writer.patch(f"/api/tracking-urls/{tu_id}", json={"status": "disabled"}).status_code
            == 200
        )
    disabled = _eventually(click, lambda answer: answer.status_code != 307)
    assert disabled.status_code in (404, 410), disabled.text

    with api.client(keys.write_key) as writer:
        assert (
            writer.patch(f"/api/tracking-urls/{tu_id}", json={"status": "active"}).status_code
            == 200
        )
    enabled = _eventually(click, lambda answer: answer.status_code == 307)
    assert enabled.status_code == 307
