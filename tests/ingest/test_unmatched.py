"""Requests that match no ingest route get a JSON 404 or 405 over HTTP, never Robyn's plain text."""

from __future__ import annotations

import pytest


@pytest.mark.parametrize(
    "target", ["/", "/nothing", "/p/extra", "/t/a/b", "/health/broker/x", "/%ff%fe"]
)
def test_unknown_path_is_json_404(ingest, target):
    reply = ingest.get(target)

    assert reply.status == 404
    assert reply.headers["content-type"] == "application/json"
    error = reply.json()["error"]
    assert error["code"] == "not_found"
    assert error["field"] == "path"
    assert "no endpoint at" in error["message"]


@pytest.mark.parametrize(
    ("method", "target", "allow"),
    [
        ("POST", "/p", "GET"),
        ("DELETE", "/t", "GET"),
        ("GET", "/batch", "POST"),
        ("PUT", "/t/auto", "GET, OPTIONS, POST"),  # GET /t/auto is a short-link lookup
        ("POST", "/t/tu_abc", "GET"),
    ],
)
def test_wrong_method_is_405(ingest, method, target, allow):
    reply = ingest.request(method, target, body=b"{}")

    assert reply.status == 405
    assert reply.headers["allow"] == allow
    error = reply.json()["error"]
    assert error["code"] == "method_not_allowed"
    assert error["field"] == "method"
    assert method in error["message"]


def test_unknown_path_counted_not_stored(ingest):
    before = len(ingest.events())

    for _ in range(3):
        assert ingest.get("/nope?key_prefix=acme").status == 404

    assert len(ingest.events()) == before
    metrics = ingest.get("/metrics").body.decode()
    assert 'endpoint="unmatched",status="404"' in metrics


def test_long_path_cut_in_message(ingest):
    reply = ingest.get("/" + "a" * 4000)

    assert reply.status == 404
    message = reply.json()["error"]["message"]
    assert len(message) < 200
    assert message.endswith("...")
