"""The redirect destination rule and the ad_click_id placement, without a server."""

from __future__ import annotations

from urllib.parse import unquote

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tracker.ingest.destinations import InvalidDestination, parse_destination, redirect_location


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("", "empty"),
        ("javascript:alert(1)", "absolute http"),
        ("JaVaScRiPt:alert(1)", "absolute http"),
        ("data:text/html,x", "absolute http"),
        ("vbscript:x", "absolute http"),
        ("//evil.example", "absolute http"),
        ("/relative", "absolute http"),
        ("https:/one-slash.example", "absolute http"),
        ("https:evil.example", "absolute http"),
        ("https://", "no host"),
        ("https:///path", "no host"),
        ("https://:443/", "no host"),
        ("https://user@host.example", "userinfo"),
        ("https://user:pw@host.example", "userinfo"),
        ("https://good.example\\@evil.example", "backslash"),
        ("https://a.example/\t", "control"),
        ("https://a.example/\n", "control"),
        (" https://a.example/", "absolute http"),
        ("https://a.example/\x7f", "control"),
        ("https://a b.example", "not a valid host"),
        ("https://a.example:0x50/", "invalid port"),
        ("https://a.example:70000/", "invalid port"),
        ("https://a..example/", "not a valid host"),
        ("https://-a.example/", "not a valid host"),
        ("https://a_b.example/", "not a valid host"),
        ("https://%61.example/", "percent-encoded"),
        ("https://[::1/", "unclosed"),
        ("https://[not-ip]/", "invalid IPv6"),
        ("https://[::1]x/", "invalid port"),
        ("https://" + "a" * 5000 + ".example", "longer than"),
    ],
)
def test_rejected_destinations(url, reason):
    with pytest.raises(InvalidDestination, match=reason):
        parse_destination(url)


@pytest.mark.parametrize(
    ("url", "location"),
    [
        ("https://a.example", "https://a.example/?ad_click_id=ID"),
        ("http://a.example:8080/p", "http://a.example:8080/p?ad_click_id=ID"),
        ("https://a.example/?", "https://a.example/?ad_click_id=ID"),
        ("https://a.example/?a=1&&b=2", "https://a.example/?a=1&&b=2&ad_click_id=ID"),
        ("https://a.example/?ad_click_id=1&ad_click_id=2", "https://a.example/?ad_click_id=ID"),
        ("https://a.example/?ad_click_id", "https://a.example/?ad_click_id=ID"),
        ("https://a.example/?ad+click+id=1", "https://a.example/?ad+click+id=1&ad_click_id=ID"),
        ("https://a.example/#", "https://a.example/?ad_click_id=ID#"),
        ("https://a.example/p%20q?x=%2F", "https://a.example/p%20q?x=%2F&ad_click_id=ID"),
        ("https://a.example/a b?q=c d#e f", "https://a.example/a%20b?q=c%20d&ad_click_id=ID#e%20f"),
        ("https://例え.jp/パス", "https://xn--r8jz45g.jp/%E3%83%91%E3%82%B9?ad_click_id=ID"),
        ("https://[2001:DB8::1]/", "https://[2001:db8::1]/?ad_click_id=ID"),
    ],
)
def test_click_id_locations(url, location):
    assert redirect_location(parse_destination(url), "ID") == location


QUERY_TEXT = st.text(alphabet="abcxyz019_-.~%+=&;:/?!$'()*,@", max_size=40)


@given(st.text(max_size=200))
@settings(max_examples=300, deadline=None)
def test_any_text_parses_or_raises_invalid(text):
    try:
        destination = parse_destination(text)
    except InvalidDestination:
        return
    assert destination.origin.startswith(("http://", "https://"))
    assert destination.origin.isascii()


@given(
    path=st.text(alphabet="abc/%20é", max_size=20),
    query=QUERY_TEXT,
    fragment=st.none() | QUERY_TEXT,
)
@settings(max_examples=300, deadline=None)
def test_click_id_added_once_and_pairs_kept(path, query, fragment):
    url = f"https://a.example/{path}?{query}" + (f"#{fragment}" if fragment is not None else "")
    location = redirect_location(parse_destination(url), "ID")

    head, hash_mark, _ = location.partition("#")
    assert bool(hash_mark) == (fragment is not None)
    pairs = head.split("?", 1)[1].split("&")
    kept = query.split("&") if query else []
    assert pairs[-1] == "ad_click_id=ID"
    assert [pair for pair in pairs[:-1] if pair.split("=", 1)[0] == "ad_click_id"] == []
    assert pairs[:-1] == [
        pair for pair in kept if unquote(pair.split("=", 1)[0].replace("+", " ")) != "ad_click_id"
    ]
    assert location.isascii()
