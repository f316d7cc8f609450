"""URLs built by the Python SDK (tracker_sdk) are accepted by the ingest server as built."""

from __future__ import annotations

import time

from tracker_sdk.urls import (
    build_encrypted_click_url,
    build_impression_url,
    build_postback_url,
    build_short_url,
    build_signed_click_url,
)

from tracker.registry.tracking_urls import create_tracking_url


def path_of(url: str, server) -> str:
    return url.removeprefix(f"http://127.0.0.1:{server.port}")


def test_sdk_signed_click(ingest):
    base = f"http://127.0.0.1:{ingest.port}"
    url = build_signed_click_url(
        base,
        ingest.secrets["acme"],
        "https://shop.example/p?q=a b&x=1#f",
        key_prefix="acme",
        params=[("offer", "7"), ("sub", "free text & more")],
        signed_params=["offer"],
        expires_at=int(time.time()) + 600,
    )

    reply = ingest.get(path_of(url, ingest))

    assert reply.status == 307
    location = reply.headers["location"]
    assert location.startswith("https://shop.example/p?q=a%20b&x=1&ad_click_id=")
    assert location.endswith("#f")
    event_id = location.split("ad_click_id=")[1].split("#")[0]
    assert ingest.events()[event_id]["params"] == {
        "offer": "7",
        "sub": "free text & more",
        "key_prefix": "acme",
    }


def test_sdk_encrypted_click(ingest):
    base = f"http://127.0.0.1:{ingest.port}"
    url = build_encrypted_click_url(
        base,
        ingest.aes_keys["acme"],
        0,
        "https://hidden.example/",
        key_prefix="acme",
        hidden_params={"sealed": "1"},
    )
    reply = ingest.get(path_of(url, ingest))
    assert reply.status == 307


def test_sdk_signed_postback_and_impression(ingest):
    base = f"http://127.0.0.1:{ingest.port}"
    secret = ingest.secrets["acme"]
    postback = build_postback_url(
        base, "acme", {"order": "42", "note": "x"}, secret=secret, signed_params=["order"]
    )
    impression = build_impression_url(base, "acme", {"slot": "top"}, secret=secret)
    unsigned = build_postback_url(base, "acme", {"order": "43"})

    assert ingest.get(path_of(postback, ingest)).status == 200
    assert ingest.get(path_of(impression, ingest)).status == 200
    assert ingest.get(path_of(unsigned, ingest)).status == 200
    assert ingest.get(path_of(postback, ingest).replace("order=42", "order=44")).status == 403


def test_sdk_short_url(ingest):
    link = create_tracking_url(ingest.registry, "acme", "https://land.example/sdk")
    ingest.wait_refresh()
    url = build_short_url(f"http://127.0.0.1:{ingest.port}", link.tu_id, {"sub": "s"})
    reply = ingest.get(path_of(url, ingest))
    assert reply.status == 307
    assert reply.headers["location"].startswith("https://land.example/sdk?ad_click_id=")
