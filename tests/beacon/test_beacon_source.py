"""Static checks of beacon/t.js: size budget and constructs that strict pages forbid."""

from __future__ import annotations

import gzip
import re
from pathlib import Path

import pytest

BEACON = Path(__file__).resolve().parents[2] / "beacon" / "t.js"
MAX_GZIP_BYTES = 1536


def source() -> str:
    return BEACON.read_text(encoding="utf-8")


def test_beacon_gzip_under_budget():
    size = len(gzip.compress(BEACON.read_bytes(), compresslevel=6))
    assert 0 < size < MAX_GZIP_BYTES


@pytest.mark.parametrize(
    "pattern",
    [
        r"\beval\s*\(",
        r"\bnew\s+Function\b",
        r"setTimeout\s*\(\s*[\"']",
        r"\bdocument\.cookie\b",
        r"\blocalStorage\b",
        r"\bsessionStorage\b",
        r"\bindexedDB\b",
        r"\binnerHTML\b",
        r"\bdocument\.write\b",
        r"\bcanvas\b",
        r"\bnavigator\.(plugins|hardwareConcurrency|deviceMemory)\b",
    ],
)
def test_beacon_avoids_forbidden_construct(pattern):
    assert re.search(pattern, source()) is None


def test_beacon_posts_to_auto_endpoint():
    text = source()
    assert '"/t/auto"' in text
    assert "sendBeacon" in text
    assert "keepalive: true" in text


def test_beacon_is_wrapped_in_iife():
    text = source().strip()
    assert text.endswith("})();")
    assert '"use strict";' in text
