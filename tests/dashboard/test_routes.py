"""The dashboard's HTTP side against `tracker up`: static files, headers, config and URL signing."""

from __future__ import annotations

import re
import socket
import threading
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from tests.dashboard.conftest import BROWSER_UA, Platform

PAGES = {
    "/dashboard": "text/html",
    "/dashboard/": "text/html",
    "/dashboard/app.js": "text/javascript",
    "/dashboard/app.css": "text/css",
    "/dashboard/config.json": "application/json",
}


@pytest.mark.parametrize(("path", "content_type"), sorted(PAGES.items()))
def test_page_served_with_csp(platform: Platform, path: str, content_type: str) -> None:
    response = httpx.get(platform.api + path, timeout=10)

    assert response.status_code == 200
    assert response.headers["content-type"].startswith(content_type)
    policy = response.headers["content-security-policy"]
    assert "default-src 'self'" in policy
    assert f"connect-src 'self' {platform.sse};" in policy
    assert "script-src 'self';" in policy
    assert "unsafe-inline" not in policy
    assert response.headers["x-content-type-options"] == "nosniff"


def test_index_has_no_inline_code(platform: Platform) -> None:
    html = httpx.get(platform.dashboard, timeout=10).text

    scripts = re.findall(r"<script\b[^>]*>", html)
    assert scripts == ['<script type="module" src="/dashboard/app.js">']
    assert "<style" not in html
    assert " style=" not in html
    assert not re.search(r"\son[a-z]+=", html), "inline event handler attribute"
    assert "http" not in re.sub(r'"http://www\.w3\.org[^"]*"', "", html.split("<body>")[0])


def test_config_names_sse_origin(platform: Platform) -> None:
    config = httpx.get(f"{platform.api}/dashboard/config.json", timeout=10).json()

    assert config == {"sse_url": platform.sse, "api_base": "/api"}


def test_config_follows_request_host(platform: Platform) -> None:
    port = platform.sse.rsplit(":", 1)[1]
    response = httpx.get(
        f"{platform.api}/dashboard/config.json", headers={"Host": "localhost:1"}, timeout=10
    )

    assert response.json()["sse_url"] == f"http://localhost:{port}"
    assert (
        f"connect-src 'self' http://localhost:{port};"
        in response.headers["content-security-policy"]
    )


def _raw_get(origin: str, path: str, host: bytes) -> tuple[int, bytes]:
    """Send a GET with a Host header that HTTP clients would refuse to send."""
    address = urlsplit(origin)
    with socket.create_connection((address.hostname, address.port), timeout=10) as connection:
        connection.sendall(
            b"GET "
            + path.encode()
            + b" HTTP/1.1\r\nHost: "
            + host
            + b"\r\nConnection: close\r\n\r\n"
        )
        response = b""
        while chunk := connection.recv(65536):
            response += chunk
    status = int(response.split(b" ", 2)[1])
    return status, response


@pytest.mark.parametrize(
    "host",
    [b"evil.example 'unsafe-inline'", b"a;script-src *", b"x" * 300, b"[::1", b"\xe9vil", b""],
)
def test_hostile_host_not_echoed(platform: Platform, host: bytes) -> None:
    port = platform.sse.rsplit(":", 1)[1]

    status, response = _raw_get(platform.api, "/dashboard/config.json", host)

    assert status in (200, 400)
    if status == 200:
        assert f'"sse_url":"http://127.0.0.1:{port}"'.encode() in response
        assert b"unsafe-inline" not in response
        assert b"script-src *" not in response


def test_unknown_asset_is_404(platform: Platform) -> None:
    for path in ("/dashboard/secret.py", "/dashboard/settings.py", "/dashboard/__init__.py"):
        response = httpx.get(platform.api + path, timeout=10)

        assert response.status_code == 404, path


def test_sse_allows_dashboard_origin(platform: Platform) -> None:
    received: dict[str, str] = {}

    def read_headers() -> None:
        with httpx.stream(
            "GET",
            f"{platform.sse}/events/stream",
            params={"key": platform.api_key},
            headers={"Origin": platform.api},
            timeout=10,
        ) as response:
            received.update(response.headers)

    reader = threading.Thread(target=read_headers, daemon=True)
    reader.start()
    reader.join(timeout=10)

    assert received.get("access-control-allow-origin") == platform.api


def test_sign_builds_working_urls(platform: Platform, api: httpx.Client) -> None:
    response = api.post(
        "/api/tracking-urls/sign",
        json={"destination": "https://example.com/landing?a=1", "params": {"sub1": "x y"}},
    )

    assert response.status_code == 200, response.text
    body = response.json()
    assert body["expires_at"] is None
    assert body["signed_url"].startswith(f"{platform.ingest}/t?")
    assert body["encrypted_url"].startswith(f"{platform.ingest}/t?d=")
    signed = parse_qs(urlsplit(body["signed_url"]).query)
    assert signed["url"] == ["https://example.com/landing?a=1"]
    assert signed["sub1"] == ["x y"]
    assert signed["sig"][0].startswith(f"{platform.key_prefix}_")
    for url in (body["signed_url"], body["encrypted_url"]):
        click = httpx.get(url, headers={"User-Agent": BROWSER_UA}, timeout=10)
        assert click.status_code == 307, url
        assert click.headers["location"].startswith("https://example.com/landing?a=1")


def test_sign_with_expiry(api: httpx.Client) -> None:
    response = api.post(
        "/api/tracking-urls/sign",
        json={"destination": "https://example.com/", "expires_in": 60},
    )

    assert response.status_code == 200
    expires_at = response.json()["expires_at"]
    assert isinstance(expires_at, int)
    assert f"exp={expires_at}" in response.json()["signed_url"]


@pytest.mark.parametrize(
    ("body", "code", "field"),
    [
        ({}, "missing_field", "destination"),
        ({"destination": "javascript:alert(1)"}, "invalid_field", "destination"),
        ({"destination": "ftp://example.com/"}, "invalid_field", "destination"),
        ({"destination": "https://example.com/" + "a" * 5000}, "invalid_field", "destination"),
        ({"destination": "https://example.com/", "expires_in": 0}, "invalid_field", "expires_in"),
        (
            {"destination": "https://example.com/", "expires_in": True},
            "invalid_field",
            "expires_in",
        ),
        (
            {"destination": "https://example.com/", "expires_in": "60"},
            "invalid_field",
            "expires_in",
        ),
        ({"destination": "https://example.com/", "expires_in": 1.5}, "invalid_field", "expires_in"),
        (
            {"destination": "https://example.com/", "expires_in": 10**12},
            "invalid_field",
            "expires_in",
        ),
        ({"destination": "https://example.com/", "params": []}, "invalid_field", "params"),
        ({"destination": "https://example.com/", "params": {"a": 1}}, "invalid_field", "params"),
        ({"destination": "https://example.com/", "secret": "x"}, "unknown_field", "secret"),
        (
            {"destination": "https://example.com/", "params": {"sig": "x"}},
            "invalid_field",
            "params",
        ),
        ({"destination": "https://example.com/", "params": {"": "x"}}, "invalid_field", "params"),
    ],
)
def test_sign_rejects_bad_body(api: httpx.Client, body: dict, code: str, field: str) -> None:
    response = api.post("/api/tracking-urls/sign", json=body)

    assert response.status_code == 400, response.text
    assert response.json()["error"]["code"] == code
    assert response.json()["error"]["field"] == field


def test_sign_rejects_malformed_json(api: httpx.Client) -> None:
    response = api.post(
        "/api/tracking-urls/sign",
        content=b'{"destination": ',
        headers={"Content-Type": "application/json"},
    )

    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid_json"


def test_sign_rejects_oversized_body(api: httpx.Client) -> None:
    response = api.post(
        "/api/tracking-urls/sign",
        content=b'{"destination": "' + b"a" * 200_000 + b'"}',
        headers={"Content-Type": "application/json"},
    )

    assert response.status_code == 413
    assert response.json()["error"]["code"] == "payload_too_large"


def test_sign_needs_tenant_write_key(platform: Platform, api: httpx.Client) -> None:
    body = {"destination": "https://example.com/"}
    read_key = api.post("/api/keys", json={"scope": "read", "name": "dashboard read"})
    assert read_key.status_code == 201, read_key.text
    cases = {
        None: (401, "unauthorized"),
        "trk_wrong": (401, "unauthorized"),
        read_key.json()["api_key"]: (403, "forbidden"),
        platform.admin_key: (403, "forbidden"),
    }
    for key, (status, code) in cases.items():
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        response = httpx.post(
            f"{platform.api}/api/tracking-urls/sign", json=body, headers=headers, timeout=10
        )

        assert response.status_code == status, (key, response.text)
        assert response.json()["error"]["code"] == code


def test_sign_concurrent_requests(api: httpx.Client) -> None:
    results: list[int] = []

    def sign(index: int) -> None:
        response = api.post(
            "/api/tracking-urls/sign", json={"destination": f"https://example.com/{index}"}
        )
        results.append(response.status_code)

    threads = [threading.Thread(target=sign, args=(index,)) for index in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)

    assert results == [200] * 16
