"""Fixtures and Hypothesis profiles of the extension tests."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, settings

from tracker import _core

VECTORS = Path(__file__).parent.parent / "vectors"

# "fast" keeps the default run to seconds; HYPOTHESIS_PROFILE=thorough digs deeper.
settings.register_profile(
    "fast", max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.register_profile(
    "thorough", max_examples=2000, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "fast"))


def load_vectors(name: str) -> Any:
    """Return the parsed JSON of one shared vector file."""
    return json.loads((VECTORS / name).read_text(encoding="utf-8"))


def pairs(raw: list[list[str]]) -> list[tuple[str, str]]:
    return [(name, value) for name, value in raw]


REQUEST = {
    "ip": "203.0.113.7",
    "user_agent": "Mozilla/5.0 (X11; Linux x86_64)",
    "referer": "https://ref.example/",
    "accept_language": "en-GB,en;q=0.9",
    "request_path": "/batch",
    "request_host": "t.example",
}


@pytest.fixture(scope="session")
def limits() -> _core.EventLimits:
    return _core.EventLimits()


# Both are immutable, so one instance serves every test and every Hypothesis example.
@pytest.fixture(scope="session")
def parser(limits: _core.EventLimits) -> _core.BatchParser:
    return _core.BatchParser(
        limits=limits,
        max_events=10_000,
        max_body_bytes=16 * 1024 * 1024,
        partitions=8,
        known_tenants=["acme", "beta", "t0"],
    )
