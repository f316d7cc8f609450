"""GET /t over HTTP: signed and encrypted clicks, the redirect, the stored event, bad links."""

from __future__ import annotations

import time
from urllib.parse import quote

import pytest

from tests.ingest.conftest import GLOBAL_HMAC_SECRET
from tracker._core import encrypt_destination, sign_click
from tracker.registry.tenants import retire_secret, rotate_hmac_secret


def q(value: str) -> str:
    return quote(value, safe="")


def signed_target(
    secret: bytes,
    destination: str,
    *,
    key_prefix: str | None = "acme",
    extra: str = "",
    covered: list[tuple[str, str]] = (),
    expires_at: int | None = None,
) -> str:
    sig = sign_click(
        secret, destination, key_prefix=key_prefix, params=list(covered), expires_at=expires_at
    )
    target = f"/t?url={q(destination)}&sig={sig}"
    if expires_at is not None:
        target += f"&exp={expires_at}"
    if covered:
        target += "&sp=" + ",".join(name for name, _ in covered)
    return target + extra


def click_id_of(location: str) -> str:
    return location.split("ad_click_id=")[1].split("#")[0].split("&")[0]


def test_signed_click_redirects_and_stores_event(ingest):
    target = signed_target(
        ingest.secrets["acme"], "https://shop.example/landing", extra="&sub1=google&campaign=c%2088"
    )

    reply = ingest.get(
        target,
        headers={
            "User-Agent": "pytest-agent",
            "Accept-Language": "de",
            "Referer": "https://ref.example/",
        },
    )

    assert reply.status == 307
    location = reply.headers["location"]
    assert location.startswith("https://shop.example/landing?ad_click_id=")
    event = ingest.events()[click_id_of(location)]
    assert event["event_type"] == "click"
    assert event["request_path"] == "/t"
    assert event["user_agent"] == "pytest-agent"
    assert event["accept_language"] == "de"
    assert event["referer"] == "https://ref.example/"
    assert event["params"] == {"sub1": "google", "campaign": "c 88", "key_prefix": "acme"}


def test_global_secret_click_needs_key_prefix(ingest):
    destination = "https://shop.example/global"
    sig = sign_click(GLOBAL_HMAC_SECRET.encode(), destination)

    accepted = ingest.get(f"/t?url={q(destination)}&sig={sig}&key_prefix=beta")
    missing = ingest.get(f"/t?url={q(destination)}&sig={sig}")

    assert accepted.status == 307
    assert (
        ingest.events()[click_id_of(accepted.headers["location"])]["params"]["key_prefix"] == "beta"
    )
    assert missing.status == 400
    assert missing.json()["error"]["field"] == "key_prefix"


def test_covered_params_are_enforced(ingest):
    secret = ingest.secrets["acme"]
    target = signed_target(
        secret, "https://shop.example/c", covered=[("offer", "7")], extra="&offer=7"
    )

    assert ingest.get(target).status == 307
    assert ingest.get(target.replace("&offer=7", "&offer=8")).status == 403
    assert ingest.get(target.replace("&offer=7", "")).status == 403
    assert ingest.get(target + "&offer=9").json()["error"]["code"] == "duplicate_param"


def test_expired_link_is_rejected(ingest):
    target = signed_target(
        ingest.secrets["acme"], "https://shop.example/e", expires_at=int(time.time()) - 10
    )
    reply = ingest.get(target)
    assert reply.status == 403
    assert reply.json()["error"]["code"] == "signature_expired"
    assert "location" not in reply.headers


def test_rotated_secret_keeps_old_links_until_retired(ingest):
    old_secret = ingest.secrets["beta"]
    rotated = rotate_hmac_secret(ingest.registry, "beta")
    ingest.wait_refresh()
    old_link = signed_target(old_secret, "https://shop.example/r", key_prefix="beta")
    new_link = signed_target(rotated.secret, "https://shop.example/r", key_prefix="beta")

    assert ingest.get(old_link).status == 307
    assert ingest.get(new_link).status == 307

    retire_secret(ingest.registry, "beta", "hmac", 0)
    ingest.secrets["beta"] = rotated.secret
    ingest.wait_refresh()
    assert ingest.get(old_link).status == 403
    assert ingest.get(new_link).status == 307


@pytest.mark.parametrize(
    "change",
    [
        pytest.param(lambda t: t[:-1] + ("0" if t[-1] != "0" else "1"), id="last-digit"),
        pytest.param(lambda t: t.replace("sig=acme_", "sig=beta_"), id="other-tenant"),
        pytest.param(lambda t: t.replace("sig=acme_", "sig=acme_A"), id="uppercase"),
        pytest.param(lambda t: t.split("&sig=")[0], id="missing"),
        pytest.param(lambda t: t.replace("landing", "landinG"), id="destination"),
    ],
)
def test_tampered_signature_is_403_without_location(ingest, change):
    target = signed_target(ingest.secrets["acme"], "https://shop.example/landing")
    reply = ingest.get(change(target))
    assert reply.status == 403
    assert "location" not in reply.headers
    assert reply.json()["error"]["code"] == "invalid_signature"


@pytest.mark.parametrize(
    "destination",
    [
        "javascript:alert(1)",
        "data:text/html,<script>alert(1)</script>",
        "//evil.example/",
        "https://good.example@evil.example/",
        "https:\\\\evil.example",
        "https://evil.example\\@good.example/",
        "https://evil.example/\x00",
        "https://evil.example/a\r\nSet-Cookie: x=1",
        "ftp://files.example/",
        "https:///nohost",
        "http://%65vil.example/",
    ],
)
def test_hostile_destination_rejected_even_when_signed(ingest, destination):
    reply = ingest.get(signed_target(ingest.secrets["acme"], destination))
    assert reply.status == 400
    assert reply.json()["error"]["code"] == "invalid_destination"
    assert "location" not in reply.headers


@pytest.mark.parametrize(
    ("destination", "expected"),
    [
        ("https://d.example/p?a=1&b=2", "https://d.example/p?a=1&b=2&ad_click_id={id}"),
        ("https://d.example/p?k=1&k=2", "https://d.example/p?k=1&k=2&ad_click_id={id}"),
        ("https://d.example/p?ad_click_id=stale&x=1", "https://d.example/p?x=1&ad_click_id={id}"),
        ("https://d.example/p?ad%5Fclick%5Fid=stale", "https://d.example/p?ad_click_id={id}"),
        ("https://d.example/p#section-2", "https://d.example/p?ad_click_id={id}#section-2"),
        ("https://d.example/p?q=1#frag?x=y", "https://d.example/p?q=1&ad_click_id={id}#frag?x=y"),
        (
            "https://d.example/a%2Fb?q=%E2%82%AC%20x+y",
            "https://d.example/a%2Fb?q=%E2%82%AC%20x+y&ad_click_id={id}",
        ),
        ("https://d.example", "https://d.example/?ad_click_id={id}"),
        (
            "https://bücher.example/straße?ä=ö",
            "https://xn--bcher-kva.example/stra%C3%9Fe?%C3%A4=%C3%B6&ad_click_id={id}",
        ),
        ("http://[2001:db8::1]:8080/x", "http://[2001:db8::1]:8080/x?ad_click_id={id}"),
        ("HTTPS://Mixed.EXAMPLE/Path", "https://mixed.example/Path?ad_click_id={id}"),
    ],
)
def test_click_id_placement(ingest, destination, expected):
    reply = ingest.get(signed_target(ingest.secrets["acme"], destination))
    assert reply.status == 307
    location = reply.headers["location"]
    assert location == expected.format(id=click_id_of(location))


def test_encrypted_click_with_tenant_key(ingest):
    blob = encrypt_destination(
        ingest.aes_keys["acme"],
        0,
        "https://hidden.example/offer?x=1",
        key_prefix="acme",
        params=[("offer", "sealed")],
    )

    reply = ingest.get(f"/t?d={q(blob)}&offer=visible&sub=s1")

    assert reply.status == 307
    location = reply.headers["location"]
    assert location.startswith("https://hidden.example/offer?x=1&ad_click_id=")
    params = ingest.events()[click_id_of(location)]["params"]
    assert params == {"offer": "sealed", "sub": "s1", "key_prefix": "acme"}


def test_encrypted_click_rejections(ingest):
    key = ingest.aes_keys["acme"]
    blob = encrypt_destination(key, 0, "https://hidden.example/", key_prefix="acme")
    wrong_key = encrypt_destination(bytes(32), 0, "https://hidden.example/", key_prefix="acme")
    unknown_id = encrypt_destination(key, 9, "https://hidden.example/", key_prefix="acme")
    hostile = encrypt_destination(key, 0, "javascript:alert(1)", key_prefix="acme")
    unprefixed = encrypt_destination(key, 0, "https://hidden.example/")

    assert ingest.get(f"/t?d={q(wrong_key)}").json()["error"]["code"] == "decryption_failed"
    assert ingest.get(f"/t?d={q(unknown_id)}").json()["error"]["code"] == "unknown_key_id"
    assert ingest.get(f"/t?d={q(hostile)}").json()["error"]["code"] == "invalid_destination"
    # This server runs in signed mode, so blobs without a tenant prefix are not accepted.
    assert ingest.get(f"/t?d={q(unprefixed)}").status == 403
    assert ingest.get(f"/t?d={q(blob)}x").status == 403
    assert (
        ingest.get(f"/t?d={q(blob)}&url=https%3A%2F%2Fa.example").json()["error"]["code"]
        == "ambiguous_click"
    )


def test_unknown_and_disabled_tenants_rejected(ingest):
    unknown = signed_target(b"k" * 32, "https://shop.example/", key_prefix="nobody")
    disabled = signed_target(ingest.secrets["gone"], "https://shop.example/", key_prefix="gone")

    assert ingest.get(unknown).json()["error"]["code"] == "unknown_tenant"
    assert ingest.get(disabled).json()["error"]["code"] == "tenant_disabled"
    assert ingest.get(disabled).status == 403


@pytest.mark.parametrize(
    ("suffix", "code", "field"),
    [
        ("&sub1=%zz", "invalid_encoding", "sub1"),
        ("&sub1=%E2%82", "invalid_encoding", "sub1"),
        ("&%ff=1", "invalid_encoding", "%ff"),
        ("&sub1=%", "invalid_encoding", "sub1"),
    ],
)
def test_bad_encoding_rejected(ingest, suffix, code, field):
    reply = ingest.get(signed_target(ingest.secrets["acme"], "https://shop.example/", extra=suffix))
    assert reply.status == 400
    assert reply.json()["error"] == {
        "code": code,
        "field": field,
        "message": reply.json()["error"]["message"],
    }


def test_duplicate_params(ingest):
    target = signed_target(ingest.secrets["acme"], "https://shop.example/dup")

    duplicate_url = ingest.get(target + "&url=https%3A%2F%2Fother.example")
    duplicate_extra = ingest.get(target + "&sub=a&sub=b")

    assert duplicate_url.status == 400
    assert duplicate_url.json()["error"] == {
        "code": "duplicate_param",
        "field": "url",
        "message": duplicate_url.json()["error"]["message"],
    }
    assert duplicate_extra.status == 307
    params = ingest.events()[click_id_of(duplicate_extra.headers["location"])]["params"]
    assert params["sub"] == "b"


def test_plus_decodes_to_space(ingest):
    reply = ingest.get(
        signed_target(
            ingest.secrets["acme"], "https://shop.example/p", extra="&term=red+shoes&lit=a%2Bb"
        )
    )
    params = ingest.events()[click_id_of(reply.headers["location"])]["params"]
    assert params["term"] == "red shoes"
    assert params["lit"] == "a+b"


def test_click_without_url_or_d(ingest):
    reply = ingest.get("/t?sub=1")
    assert reply.status == 400
    assert reply.json()["error"]["code"] == "missing_param"


@pytest.mark.parametrize(
    "exp",
    ["9223372036854775808", "9999999999999999999", "18446744073709551616", "-5", "1e9", "²", "12a"],
)
def test_malformed_expiry_is_rejected(ingest, exp):
    destination = "https://shop.example/x"
    sig = sign_click(ingest.secrets["acme"], destination, key_prefix="acme")

    reply = ingest.get(f"/t?url={q(destination)}&sig={sig}&exp={q(exp)}")

    assert reply.status == 400
    assert reply.json()["error"]["field"] == "exp"
