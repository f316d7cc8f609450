"""Cost of API key checks and of authenticated requests to a real `tracker api`.

Baselines measured in the same run:

- key check: `hashlib.sha256` plus `hmac.compare_digest` of one raw key, the
  least work any hashed-key check does, against `verify_api_key` with its
  cache (the common case) and with the cache cleared before every call (one
  SQLite lookup per check);
- requests: `GET /api/health` (no key; one registry query and a freshness
  probe of the warm and cold tiers) against `GET /api/keys` (key check, scope
  check, one registry query) over one keep-alive connection.

Figures of one run are in bench/results/api.md.

Run: `pytest bench/test_api.py -p no:cacheprovider --benchmark-columns=mean,ops`.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.api.conftest import ApiServer, create_tenant
from tracker.registry import api_keys
from tracker.registry.db import Registry


@pytest.fixture(scope="module")
def registry_and_key(tmp_path_factory: pytest.TempPathFactory) -> tuple[Registry, str]:
    registry = Registry(tmp_path_factory.mktemp("bench-keys") / "registry.db")
    now = int(time.time())
    registry.connection().execute(
        "INSERT INTO tenants (key_prefix, created_at, updated_at) VALUES ('bench', ?, ?)",
        (now, now),
    )
    for _ in range(1000):
        api_keys.create_api_key(registry, key_prefix="bench", scope="read")
    created = api_keys.create_api_key(registry, key_prefix="bench", scope="write")
    return registry, created.raw_key


@pytest.mark.benchmark(group="key-check")
def test_key_check_baseline_sha256(benchmark, registry_and_key: tuple[Registry, str]) -> None:
    _, raw_key = registry_and_key
    stored = hashlib.sha256(raw_key.encode()).digest()

    benchmark(lambda: hmac.compare_digest(hashlib.sha256(raw_key.encode()).digest(), stored))


@pytest.mark.benchmark(group="key-check")
def test_key_check_cached(benchmark, registry_and_key: tuple[Registry, str]) -> None:
    registry, raw_key = registry_and_key
    api_keys.verify_api_key(registry, raw_key)

    benchmark(api_keys.verify_api_key, registry, raw_key)


@pytest.mark.benchmark(group="key-check")
def test_key_check_uncached(benchmark, registry_and_key: tuple[Registry, str]) -> None:
    registry, raw_key = registry_and_key

    def check() -> None:
        api_keys.clear_cache()
        api_keys.verify_api_key(registry, raw_key)

    benchmark(check)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ApiServer, str]]:
    api = ApiServer(
        Path(tmp_path_factory.mktemp("bench-api")), {"API_REQUEST_LOG": "false"}
    ).start()
    keys = create_tenant(api, "benchhttp")
    yield api, keys.read_key
    api.stop()


@pytest.mark.benchmark(group="request")
def test_request_baseline_health(benchmark, server: tuple[ApiServer, str]) -> None:
    api, _ = server
    with api.client(None) as client:
        benchmark.pedantic(lambda: client.get("/api/health"), rounds=300, warmup_rounds=20)


@pytest.mark.benchmark(group="request")
def test_request_authenticated_list(benchmark, server: tuple[ApiServer, str]) -> None:
    api, read_key = server
    with api.client(read_key) as client:
        assert client.get("/api/keys").status_code == 200
        benchmark.pedantic(lambda: client.get("/api/keys"), rounds=300, warmup_rounds=20)
