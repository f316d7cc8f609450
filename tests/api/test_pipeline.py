"""A stats query over events that went through the real pipeline: ingest, event filter, archiver.

`tracker serve` takes postbacks, `tracker consume event-filter` moves them to
`events-clean`, `tracker consume archiver` writes the Delta table, and the API
reads the cold tier. Everything runs as subprocesses on one data
directory with the local broker.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.api.conftest import ApiServer, create_tenant
from tests.conftest import free_port
from tests.consumers.conftest import broker_env
from tests.ingest.conftest import server_env, start_server, stop_server, wait_healthy

ARRIVAL_TIMEOUT_SECONDS = 60.0
BROWSER = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0 Safari/537.36"


def _consume(name: str, data_dir: Path) -> subprocess.Popen[bytes]:
    log = (data_dir / f"{name}.log").open("ab")
    return subprocess.Popen(
        [sys.executable, "-c", "from tracker.cli.main import main; main()", "consume", name],
        env={**os.environ, **broker_env(data_dir)},
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=log,
    )


def _stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ApiServer, str, Path]]:
    data_dir = tmp_path_factory.mktemp("pipeline")
    api = ApiServer(data_dir).start()
    port = free_port()
    ingest = start_server(server_env(data_dir, port), data_dir / "serve.log")
    consumers = [_consume("event-filter", data_dir), _consume("archiver", data_dir)]
    try:
        wait_healthy("127.0.0.1", port, ingest, data_dir / "serve.log")
        yield api, f"http://127.0.0.1:{port}", data_dir
    finally:
        for consumer in consumers:
            _stop(consumer)
        stop_server(ingest)
        api.stop()


@pytest.mark.slow
def test_stats_over_pipeline_events(pipeline: tuple[ApiServer, str, Path]) -> None:
    api, ingest_url, data_dir = pipeline
    alpha = create_tenant(api, "pipea", plan="pro")
    beta = create_tenant(api, "pipeb", plan="pro")
    sent: Counter[tuple[str, str]] = Counter()
    with httpx.Client(base_url=ingest_url, headers={"User-Agent": BROWSER}) as ingest:
        time.sleep(0.5)  # the ingest cache picks up the new tenants within REGISTRY_REFRESH_SECONDS
        for index in range(30):
            tenant = "pipea" if index % 3 else "pipeb"
            source = ("google", "bing", "it's 100%")[index % 3]
            answer = ingest.get(
                "/p", params={"key_prefix": tenant, "sub1": source, "click_id": f"c{index}"}
            )
            assert answer.status_code == 200, answer.text
            sent[(tenant, source)] += 1

    expected = {source: count for (tenant, source), count in sent.items() if tenant == "pipea"}
    deadline = time.monotonic() + ARRIVAL_TIMEOUT_SECONDS
    body: dict = {}
    with api.client(alpha.read_key) as reader:
        while time.monotonic() < deadline:
            answer = reader.get(
                "/api/events/stats", params={"hours": 1, "group_by": "param:sub1", "tier": "cold"}
            )
            assert answer.status_code == 200, answer.text
            body = answer.json()
            if body["total"] >= sum(expected.values()):
                break
            time.sleep(0.5)

    logs = {
        name: (data_dir / f"{name}.log").read_text(errors="replace")[-2000:]
        for name in ("event-filter", "archiver")
    }
    assert body["total"] == sum(expected.values()), logs
    assert {row["param:sub1"]: row["count"] for row in body["rows"]} == expected
    assert body["tier"] == "cold"
    assert body["data_through_ms"] is not None
    with api.client(beta.read_key) as other:
        beta_total = other.get("/api/events/stats", params={"hours": 1, "tier": "cold"}).json()[
            "total"
        ]
    assert beta_total == sum(count for (tenant, _), count in sent.items() if tenant == "pipeb")
