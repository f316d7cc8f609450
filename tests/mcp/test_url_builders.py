"""URLs built by the MCP tools are accepted by the ingest service and record what they promise."""

from __future__ import annotations

import httpx

from tests.mcp.conftest import error_json, result_json, wait_until

DESTINATION = "https://example.com/offer?id=7"
BROWSER = {
    "User-Agent": "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 Chrome/131.0 Safari/537.36"
}


def _location(url: str) -> httpx.URL:
    response = httpx.get(url, headers=BROWSER)
    assert response.status_code == 307, response.text
    return httpx.URL(response.headers["location"])


def test_signed_click_url_redirects(mcp_stdio):
    built = result_json(
        mcp_stdio.call(
            "build_signed_click_url",
            {
                "destination": DESTINATION,
                "params": {"offer_id": "7", "sub1": "fb"},
                "signed_params": ["offer_id"],
                "expires_in": 3600,
            },
        )
    )
    assert built["source"] == "local"
    assert built["key_prefix"] == "demo"

    location = _location(built["url"])
    assert str(location).startswith("https://example.com/offer?id=7")
    assert location.params["ad_click_id"]


def test_signed_param_cannot_change(mcp_stdio):
    built = result_json(
        mcp_stdio.call(
            "build_signed_click_url",
            {
                "destination": DESTINATION,
                "params": {"offer_id": "7"},
                "signed_params": ["offer_id"],
            },
        )
    )
    tampered = built["url"].replace("offer_id=7", "offer_id=8")

    response = httpx.get(tampered, headers=BROWSER)
    assert response.status_code in (400, 403)


def test_encrypted_click_url_redirects(mcp_stdio):
    built = result_json(
        mcp_stdio.call(
            "build_encrypted_click_url",
            {
                "destination": DESTINATION,
                "hidden_params": {"offer_id": "7"},
                "params": {"sub1": "x"},
            },
        )
    )
    assert "example.com" not in built["url"]
    assert built["aes_key_id"] == 0

    assert _location(built["url"]).host == "example.com"


def test_postback_and_impression_urls_record(mcp_stdio, platform):
    postback = result_json(
        mcp_stdio.call(
            "build_postback_url",
            {"params": {"event_type": "mcp_postback", "click_id": "c1"}, "sign": True},
        )
    )
    impression = result_json(mcp_stdio.call("build_impression_url", {"params": {"creative": "b1"}}))

    answer = httpx.get(postback["url"], headers=BROWSER)
    assert answer.status_code == 200, answer.text
    event_id = answer.json()["event_id"]
    pixel = httpx.get(impression["url"], headers=BROWSER)
    assert pixel.status_code == 200
    assert pixel.headers["content-type"] == "image/gif"

    def found() -> bool:
        events = platform.api(
            "GET", "/api/events", params={"hours": "2", "param.click_id": "c1"}
        ).json()
        return any(event["event_id"] == event_id for event in events["events"])

    wait_until(found, 60, "the postback to reach the events API")


def test_signed_postback_rejects_edit(mcp_stdio):
    built = result_json(
        mcp_stdio.call(
            "build_postback_url",
            {
                "params": {"click_id": "c2", "amount": "10"},
                "sign": True,
                "signed_params": ["amount"],
            },
        )
    )

    assert httpx.get(built["url"], headers=BROWSER).status_code == 200
    assert httpx.get(
        built["url"].replace("amount=10", "amount=99"), headers=BROWSER
    ).status_code in (400, 403)


def test_short_url_adds_params(mcp_stdio):
    link = result_json(
        mcp_stdio.call("create_tracking_url", {"destination": "https://example.com/s"})
    )
    built = result_json(
        mcp_stdio.call("build_short_url", {"tu_id": link["tu_id"], "params": {"sub1": "a b"}})
    )
    assert built["url"] == f"{link['short_url']}?sub1=a%20b"

    wait_until(lambda: httpx.get(built["url"]).status_code == 307, 30, "the short link to redirect")


def test_builders_reject_bad_params(mcp_stdio):
    cases = [
        (
            "build_signed_click_url",
            {"destination": DESTINATION, "params": {"sig": "x"}},
            "reserved_param",
        ),
        (
            "build_signed_click_url",
            {"destination": DESTINATION, "signed_params": ["missing"]},
            "invalid_param",
        ),
        (
            "build_encrypted_click_url",
            {"destination": DESTINATION, "params": {"d": "x"}},
            "reserved_param",
        ),
        ("build_postback_url", {"params": {"key_prefix": "other"}}, "reserved_param"),
        ("build_impression_url", {"expires_in": 60}, "invalid_argument"),
    ]
    for tool, arguments, code in cases:
        assert error_json(mcp_stdio.call(tool, arguments))["code"] == code, (tool, arguments)
