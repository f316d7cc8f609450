"""Postbacks, impressions, beacon, batches, /ingest, health, metrics and t.js over HTTP."""

from __future__ import annotations

import hashlib
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import orjson
import pytest

from tests.ingest.conftest import launch, stop_server
from tracker._core import sign_click
from tracker.ingest.service import PARSE_IN_POOL_BYTES, TRANSPARENT_GIF
from tracker.registry.api_keys import create_api_key, revoke_api_key

BEACON_JS = Path(__file__).resolve().parents[2] / "beacon" / "t.js"


def test_postback_returns_event_id(ingest):
    reply = ingest.get(
        "/p?key_prefix=acme&click_id=abc&amount=9.99", headers={"X-Forwarded-For": "203.0.113.7"}
    )

    assert reply.status == 200
    assert reply.headers["content-type"] == "application/json"
    event = ingest.events()[reply.json()["event_id"]]
    assert event["event_type"] == "postback"
    assert event["request_path"] == "/p"
    assert event["ip"] == "203.0.113.7"
    assert event["params"] == {"key_prefix": "acme", "click_id": "abc", "amount": "9.99"}


def test_postback_signature_optional_but_verified(ingest):
    secret = ingest.secrets["acme"]
    sig = sign_click(secret, "/p", key_prefix="acme", params=[("order", "42")])
    valid = f"/p?key_prefix=acme&order=42&sig={sig}&sp=order"

    assert ingest.get(valid).status == 200
    assert ingest.get(valid.replace("order=42", "order=43")).status == 403
    assert ingest.get(f"/p?key_prefix=acme&sig={sig}").status == 403
    assert ingest.get(f"/i?key_prefix=acme&order=42&sig={sig}&sp=order").status == 403


def test_postback_rejects_unknown_and_missing_tenant(ingest):
    assert ingest.get("/p?key_prefix=nobody").json()["error"]["code"] == "unknown_tenant"
    assert ingest.get("/p?key_prefix=gone").json()["error"]["code"] == "tenant_disabled"
    missing = ingest.get("/p?x=1")
    assert missing.status == 400
    assert missing.json()["error"]["field"] == "key_prefix"


def test_impression_returns_transparent_gif(ingest):
    before = set(ingest.events())
    reply = ingest.get("/i?key_prefix=acme&slot=top")

    assert reply.status == 200
    assert reply.body == TRANSPARENT_GIF
    assert len(reply.body) == 43
    assert reply.body.startswith(b"GIF89a")
    assert reply.headers["content-type"] == "image/gif"
    assert reply.headers["cache-control"] == "no-store, no-cache, must-revalidate"
    assert reply.headers["pragma"] == "no-cache"
    assert reply.headers["expires"] == "0"
    new = [event for event_id, event in ingest.events().items() if event_id not in before]
    assert [event["event_type"] for event in new] == ["impression"]
    assert new[0]["params"] == {"key_prefix": "acme", "slot": "top"}


@pytest.mark.parametrize("content_type", ["text/plain;charset=UTF-8", "application/json"])
def test_beacon_stores_pageview(ingest, content_type):
    body = {
        "k": "acme",
        "t": "pageview",
        "u": "https://site.example/article?id=3",
        "r": "https://search.example/",
        "c": "01890000-0000-7000-8000-000000000000",
        "p": {"title": "Article"},
    }
    before = set(ingest.events())

    reply = ingest.post(
        "/t/auto", orjson.dumps(body), content_type, headers={"User-Agent": "browser"}
    )

    assert reply.status == 204
    assert reply.headers["access-control-allow-origin"] == "*"
    assert "access-control-allow-credentials" not in reply.headers
    new = [event for event_id, event in ingest.events().items() if event_id not in before]
    assert len(new) == 1
    assert new[0]["event_type"] == "pageview"
    assert new[0]["request_path"] == "/t/auto"
    assert new[0]["user_agent"] == "browser"
    assert new[0]["params"] == {
        "title": "Article",
        "url": "https://site.example/article?id=3",
        "referrer": "https://search.example/",
        "ad_click_id": "01890000-0000-7000-8000-000000000000",
        "key_prefix": "acme",
    }


def test_beacon_preflight(ingest):
    reply = ingest.request("OPTIONS", "/t/auto", headers={"Origin": "https://site.example"})
    assert reply.status == 204
    assert reply.headers["access-control-allow-origin"] == "*"
    assert reply.headers["access-control-allow-methods"] == "POST"
    assert reply.headers["access-control-allow-headers"] == "Content-Type"
    assert reply.headers["access-control-max-age"] == "86400"


@pytest.mark.parametrize(
    ("body", "content_type", "status", "code"),
    [
        (b"{not json", "text/plain", 400, "invalid_json"),
        (b"[1,2]", "text/plain", 400, "invalid_json"),
        (b'{"t":"pageview","u":"https://a.example/"}', "text/plain", 400, "missing_param"),
        (
            b'{"k":"acme","t":"page view","u":"https://a.example/"}',
            "text/plain",
            400,
            "invalid_event",
        ),
        (
            b'{"k":"acme","t":"pageview","u":"javascript:alert(1)"}',
            "text/plain",
            400,
            "invalid_param",
        ),
        (
            b'{"k":"acme","t":"pageview","u":"https://a.example/","p":{"a":1}}',
            "text/plain",
            400,
            "invalid_param",
        ),
        (
            b'{"k":"nobody","t":"pageview","u":"https://a.example/"}',
            "text/plain",
            403,
            "unknown_tenant",
        ),
        (
            b'{"k":"acme","t":"pageview","u":"https://a.example/"}',
            "text/html",
            415,
            "unsupported_media_type",
        ),
        (
            b'{"k":"acme","t":"pageview","u":"https://a.example/","p":{"x":"'
            + b"a" * 17000
            + b'"}}',
            "text/plain",
            413,
            "body_too_large",
        ),
    ],
)
def test_beacon_rejections(ingest, body, content_type, status, code):
    reply = ingest.post("/t/auto", body, content_type)
    assert reply.status == status
    assert reply.json()["error"]["code"] == code


def test_batch_accepts_and_rejects_per_event(ingest):
    events = [
        {"event_type": "signup", "params": {"key_prefix": "acme", "plan": "pro"}},
        {"event_type": "bad type", "params": {"key_prefix": "acme"}},
        {"event_type": "signup", "params": {"key_prefix": "nobody"}},
        {"event_type": "signup", "params": {"key_prefix": "beta"}},
    ]
    before = set(ingest.events())

    reply = ingest.post("/batch", orjson.dumps(events))

    assert reply.status == 200
    result = reply.json()
    assert result["accepted"] == 2
    assert [rejection["index"] for rejection in result["rejected"]] == [1, 2]
    assert all(set(rejection) == {"index", "field", "reason"} for rejection in result["rejected"])
    new = [event for event_id, event in ingest.events().items() if event_id not in before]
    assert sorted(event["params"]["key_prefix"] for event in new) == ["acme", "beta"]
    assert all(event["request_path"] == "/batch" for event in new)


def test_batch_object_form(ingest):
    body = orjson.dumps({"events": [{"event_type": "x", "params": {"key_prefix": "acme"}}]})
    reply = ingest.post("/batch", body)
    assert reply.status == 200
    assert reply.json() == {"accepted": 1, "rejected": []}


@pytest.mark.parametrize(
    ("body", "content_type", "status"),
    [
        (b"{broken", "application/json", 400),
        (b'"a string"', "application/json", 400),
        (b"", "application/json", 400),
        (b"[]", "text/plain", 415),
        (b"\xff\xfe\x00", "application/json", 400),
    ],
)
def test_batch_rejects_bad_bodies(ingest, body, content_type, status):
    reply = ingest.post("/batch", body, content_type)
    assert reply.status == status
    assert "code" in reply.json()["error"]


def test_batch_over_max_size_is_413(ingest):
    events = [{"event_type": "x", "params": {"key_prefix": "acme"}}] * 10_001
    reply = ingest.post("/batch", orjson.dumps(events))
    assert reply.status == 413
    assert reply.json()["error"]["code"] == "batch_too_large"


def large_batch(label: str, count: int) -> bytes:
    """Return a /batch body well over the size from which a pool thread parses it."""
    events = [
        {"event_type": "bulk", "params": {"key_prefix": "acme", "run": label, "n": str(n)}}
        for n in range(count)
    ]
    body = orjson.dumps(events)
    assert len(body) >= PARSE_IN_POOL_BYTES
    return body


def stored_numbers(ingest, label: str) -> list[str]:
    return sorted(
        event["params"]["n"]
        for event in ingest.events().values()
        if event["params"].get("run") == label
    )


def test_large_batch_parsed_in_pool(ingest):
    reply = ingest.post("/batch", large_batch("pool", 3_000))

    assert reply.status == 200
    assert reply.json() == {"accepted": 3_000, "rejected": []}
    assert stored_numbers(ingest, "pool") == sorted(str(n) for n in range(3_000))


def test_large_malformed_batch_is_400(ingest):
    body = large_batch("broken", 2_000)[:-1]
    reply = ingest.post("/batch", body)
    assert reply.status == 400
    assert reply.json()["error"]["code"] == "invalid_batch"


def test_concurrent_large_batches_lose_nothing(ingest):
    labels = [f"parallel-{index}" for index in range(12)]

    def send(label: str) -> int:
        return ingest.post("/batch", large_batch(label, 1_500)).status

    with ThreadPoolExecutor(max_workers=6) as pool:
        statuses = list(pool.map(send, labels))

    assert statuses == [200] * len(labels)
    for label in labels:
        assert len(stored_numbers(ingest, label)) == 1_500


def test_large_batch_parsed_on_loop_thread(tmp_path):
    """BATCH_PARSE_THREADS=0 parses every body on the event loop thread."""
    server = launch(tmp_path / "data", BATCH_PARSE_THREADS="0")
    try:
        reply = server.post("/batch", large_batch("inline", 2_000))
        assert reply.status == 200
        assert reply.json()["accepted"] == 2_000
        assert len(stored_numbers(server, "inline")) == 2_000
    finally:
        stop_server(server.process)
        server.registry.close()


def test_ingest_with_write_key(ingest):
    created = create_api_key(ingest.registry, key_prefix="acme", scope="write")
    body = orjson.dumps(
        {
            "event_type": "purchase",
            "params": {"key_prefix": "beta", "total": "5"},
            "ip": "198.51.100.1",
        }
    )

    reply = ingest.post("/ingest", body, headers={"Authorization": f"Bearer {created.raw_key}"})

    assert reply.status == 200
    event = ingest.events()[reply.json()["event_id"]]
    assert event["event_type"] == "purchase"
    assert event["ip"] == "198.51.100.1"
    assert event["params"] == {"key_prefix": "acme", "total": "5"}


def test_ingest_rejects_bad_credentials(ingest):
    body = orjson.dumps({"event_type": "purchase"})
    read_key = create_api_key(ingest.registry, key_prefix="acme", scope="read")
    revoked = create_api_key(ingest.registry, key_prefix="acme", scope="write")
    revoke_api_key(ingest.registry, revoked.api_key.key_id)

    missing = ingest.post("/ingest", body)
    malformed = ingest.post("/ingest", body, headers={"Authorization": "Bearer not-a-key"})
    wrong_scheme = ingest.post(
        "/ingest", body, headers={"Authorization": f"Basic {read_key.raw_key}"}
    )
    read_only = ingest.post(
        "/ingest", body, headers={"Authorization": f"Bearer {read_key.raw_key}"}
    )
    revoked_reply = ingest.post(
        "/ingest", body, headers={"Authorization": f"Bearer {revoked.raw_key}"}
    )

    assert missing.status == 401
    assert missing.headers["www-authenticate"].startswith("Bearer")
    assert malformed.status == 401
    assert wrong_scheme.status == 401
    assert read_only.status == 403
    assert read_only.json()["error"]["code"] == "permission_denied"
    assert revoked_reply.status == 401
    assert revoked.raw_key not in revoked_reply.body.decode()


def test_ingest_rejects_bad_events(ingest):
    created = create_api_key(ingest.registry, key_prefix="acme", scope="write")
    auth = {"Authorization": f"Bearer {created.raw_key}"}

    assert ingest.post("/ingest", b"{", headers=auth).json()["error"]["code"] == "invalid_json"
    assert ingest.post("/ingest", b"{}", headers=auth).json()["error"]["field"] == "event_type"
    assert (
        ingest.post("/ingest", b'{"event_type":"x","params":{"a":1}}', headers=auth).status == 400
    )
    assert ingest.post("/ingest", b'{"event_type":"x"}', "text/plain", headers=auth).status == 415


def test_health_reports_broker_and_registry(ingest):
    body = ingest.get("/health").json()
    assert body["status"] == "ok"
    assert body["broker"] == {"backend": "local", "state": "connected"}
    assert body["queue_events"] >= 0
    assert body["spool_events"] == 0
    assert body["registry_age_seconds"] < 5
    assert ingest.get("/health/broker").status == 200


def test_metrics_count_requests_and_rejections(ingest):
    ingest.get("/p?key_prefix=acme")
    ingest.get("/p?key_prefix=nobody")

    reply = ingest.get("/metrics")

    assert reply.status == 200
    text = reply.body.decode()
    assert 'tracker_ingest_requests_total{endpoint="/p",status="200"}' in text
    assert 'tracker_ingest_requests_total{endpoint="/p",status="403"}' in text
    assert 'tracker_ingest_events_rejected_total{reason="tenant"}' in text
    assert 'tracker_ingest_events_accepted_total{endpoint="/p"}' in text
    assert "tracker_ingest_request_duration_seconds_bucket" in text
    assert "tracker_ingest_producer_queue_events" in text
    assert "tracker_ingest_broker_up" in text


def test_beacon_script_with_etag(ingest):
    expected = BEACON_JS.read_bytes()

    first = ingest.get("/t.js")
    cached = ingest.get("/t.js", headers={"If-None-Match": first.headers["etag"]})
    stale = ingest.get("/t.js", headers={"If-None-Match": '"other"'})

    assert first.status == 200
    assert first.body == expected
    assert first.headers["content-type"] == "application/javascript"
    assert first.headers["cache-control"] == "public, max-age=86400, immutable"
    assert first.headers["etag"] == '"' + hashlib.sha256(expected).hexdigest()[:32] + '"'
    assert cached.status == 304
    assert cached.body == b""
    assert stale.status == 200


def test_client_ip_from_trusted_proxy_headers(ingest):
    cases = [
        ({"X-Forwarded-For": "198.51.100.9, 127.0.0.1"}, "198.51.100.9"),
        ({"X-Forwarded-For": "10.9.9.9, 198.51.100.10"}, "198.51.100.10"),
        ({"Forwarded": 'for="[2001:db8::7]:4711";proto=https'}, "2001:db8::7"),
        ({"Forwarded": "for=192.0.2.60, for=127.0.0.1"}, "192.0.2.60"),
        ({"X-Forwarded-For": "not-an-ip"}, "127.0.0.1"),
        ({}, "127.0.0.1"),
    ]
    for headers, expected in cases:
        reply = ingest.get("/p?key_prefix=acme", headers=headers)
        assert ingest.events()[reply.json()["event_id"]]["ip"] == expected, headers


def test_event_timestamp_is_server_time(ingest):
    started = int(time.time() * 1000)
    reply = ingest.get("/p?key_prefix=acme&timestamp=1")
    event = ingest.events()[reply.json()["event_id"]]
    assert started - 1000 <= event["timestamp"] <= int(time.time() * 1000) + 1000
    assert event["params"]["timestamp"] == "1"
