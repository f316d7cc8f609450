"""GET /t/<tu_id> over HTTP: redirect, stored params, 404, 410, rotation within the refresh."""

from __future__ import annotations

from tracker.registry.tenants import disable_tenant, enable_tenant
from tracker.registry.tracking_urls import (
    create_tracking_url,
    disable_tracking_url,
    enable_tracking_url,
    rotate_destination,
)


def click_id_of(location: str) -> str:
    return location.split("ad_click_id=")[1].split("#")[0].split("&")[0]


def test_short_link_redirects_with_params(ingest):
    link = create_tracking_url(
        ingest.registry,
        "acme",
        "https://land.example/page?utm=x#top",
        params={"campaign": "spring"},
    )
    ingest.wait_refresh()

    reply = ingest.get(f"/t/{link.tu_id}?sub1=google&key_prefix=forged&tu_id=forged")

    assert reply.status == 307
    location = reply.headers["location"]
    assert location.startswith("https://land.example/page?utm=x&ad_click_id=")
    assert location.endswith("#top")
    event = ingest.events()[click_id_of(location)]
    assert event["request_path"] == f"/t/{link.tu_id}"
    assert event["params"] == {
        "campaign": "spring",
        "sub1": "google",
        "key_prefix": "acme",
        "tu_id": link.tu_id,
    }


def test_unknown_short_link_is_404(ingest):
    reply = ingest.get("/t/tu_00000000-0000-7000-8000-000000000000")
    assert reply.status == 404
    assert reply.json()["error"]["code"] == "tracking_url_not_found"
    assert "location" not in reply.headers


def test_disabled_short_link_is_410_then_back(ingest):
    link = create_tracking_url(ingest.registry, "acme", "https://land.example/d")
    disable_tracking_url(ingest.registry, link.tu_id)
    ingest.wait_refresh()
    gone = ingest.get(f"/t/{link.tu_id}")

    enable_tracking_url(ingest.registry, link.tu_id)
    ingest.wait_refresh()
    back = ingest.get(f"/t/{link.tu_id}")

    assert gone.status == 410
    assert gone.json()["error"]["code"] == "tracking_url_disabled"
    assert back.status == 307


def test_rotated_destination_seen_after_refresh(ingest):
    link = create_tracking_url(ingest.registry, "acme", "https://before.example/")
    ingest.wait_refresh()
    before = ingest.get(f"/t/{link.tu_id}")

    rotate_destination(ingest.registry, link.tu_id, "https://after.example/new")
    ingest.wait_refresh()
    after = ingest.get(f"/t/{link.tu_id}")

    assert before.headers["location"].startswith("https://before.example/?ad_click_id=")
    assert after.headers["location"].startswith("https://after.example/new?ad_click_id=")


def test_short_link_of_disabled_tenant_rejected(ingest):
    link = create_tracking_url(ingest.registry, "beta", "https://land.example/t")
    disable_tenant(ingest.registry, "beta")
    ingest.wait_refresh()
    try:
        reply = ingest.get(f"/t/{link.tu_id}")
    finally:
        enable_tenant(ingest.registry, "beta")
        ingest.wait_refresh()
    assert reply.status == 403
    assert reply.json()["error"]["code"] == "tenant_disabled"


def test_new_tenant_usable_after_refresh(ingest):
    from tracker.registry.tenants import create_tenant

    created = create_tenant(ingest.registry, key_prefix="fresh")
    ingest.wait_refresh()
    reply = ingest.get("/p?key_prefix=fresh&x=1")
    assert created.key_prefix == "fresh"
    assert reply.status == 200
