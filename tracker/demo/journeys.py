"""Plan and send demo journeys: signed click, landing beacon, and sometimes a postback.

A human journey is a signed click (`GET /t`) with sub-id params and a `click_id` appended
unsigned, the landing page's beacon (`POST /t/auto`) carrying the `ad_click_id` from the
redirect, and, at the conversion rate, a postback (`GET /p`) with the same `click_id`. A
crawler journey is the click alone, because crawlers run no script and never convert. Each
visitor gets its own documentation-range address in `X-Forwarded-For`; ingest uses it only
when the demo's address is in its `TRUSTED_PROXIES`.
"""

from __future__ import annotations

import ipaddress
import random
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from urllib.parse import parse_qs, urlsplit

import httpx
import orjson

from tracker import _core
from tracker.demo.agents import UserAgents

__all__ = ["Journey", "SentTally", "Tenant", "plan_journeys", "send_bad_links", "send_journeys"]

DESTINATIONS = (
    "https://shop.example.com/landing",
    "https://offers.example.net/spring-sale?ref=demo",
    "https://app.example.org/signup",
)
SUB_VALUES = {
    "sub1": ("google", "facebook", "tiktok", "newsletter"),
    "sub2": ("campaign-spring", "campaign-retarget", "campaign-brand"),
    "sub3": ("mobile", "desktop", "tablet"),
}
LANGUAGES = ("en-US,en;q=0.9", "de-DE,de;q=0.8,en;q=0.5", "fr-FR,fr;q=0.9", "es-ES,es;q=0.9")
# RFC 5737 and RFC 3849 documentation ranges: 762 IPv4 hosts, then IPv6 addresses.
IPV4_RANGES = ("192.0.2.0/24", "198.51.100.0/24", "203.0.113.0/24")
IPV6_RANGE = ipaddress.IPv6Network("2001:db8::/32")


@dataclass(frozen=True, slots=True)
class Tenant:
    """A tenant the demo sends traffic for: its key prefix, HMAC secret and API key."""

    key_prefix: str
    hmac_secret: bytes
    api_key: str


@dataclass(frozen=True, slots=True)
class Journey:
    """One visitor's planned requests."""

    tenant: Tenant
    ip: str
    user_agent: str
    accept_language: str
    is_bot: bool
    destination: str
    subs: dict[str, str]
    click_id: str
    converts: bool
    amount: str


@dataclass
class TenantTally:
    """Counts of requests sent to one tenant that the platform accepted with 2xx."""

    human_clicks: int = 0
    bot_clicks: int = 0
    pageviews: int = 0
    postbacks: int = 0
    clicks_by_sub1: Counter[str] = field(default_factory=Counter)

    @property
    def accepted_events(self) -> int:
        return self.human_clicks + self.bot_clicks + self.pageviews + self.postbacks


@dataclass
class SentTally:
    """Everything sent: per-tenant accepted events, bad-link responses and unexpected responses."""

    tenants: dict[str, TenantTally] = field(default_factory=dict)
    rejects_expected: Counter[str] = field(default_factory=Counter)
    rejects_seen: Counter[str] = field(default_factory=Counter)
    failures: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def tenant(self, key_prefix: str) -> TenantTally:
        return self.tenants.setdefault(key_prefix, TenantTally())


def visitor_ip(index: int) -> str:
    """Return the index-th distinct documentation address: hosts .1 to .254 of each /24, then IPv6."""
    per_range = 254
    if index < per_range * len(IPV4_RANGES):
        network = ipaddress.IPv4Network(IPV4_RANGES[index // per_range])
        return str(network.network_address + 1 + index % per_range)
    return str(IPV6_RANGE.network_address + 1 + index)


def plan_journeys(
    tenants: list[Tenant],
    agents: UserAgents,
    *,
    count: int,
    conversion_rate: float,
    bot_share: float,
    rng: random.Random,
) -> list[Journey]:
    """Draw `count` journeys spread over the tenants; the same seed gives the same plan."""
    run_tag = f"{rng.getrandbits(32):08x}"
    journeys = []
    for index in range(count):
        is_bot = rng.random() < bot_share
        converts = not is_bot and rng.random() < conversion_rate
        journeys.append(
            Journey(
                tenant=tenants[index % len(tenants)],
                ip=visitor_ip(index),
                user_agent=agents.pick_crawler(rng) if is_bot else agents.pick_browser(rng),
                accept_language=rng.choice(LANGUAGES),
                is_bot=is_bot,
                destination=rng.choice(DESTINATIONS),
                subs={name: rng.choice(values) for name, values in SUB_VALUES.items()},
                click_id=f"c-{run_tag}-{index:06d}",
                converts=converts,
                amount=f"{rng.randint(100, 9999) / 100:.2f}",
            )
        )
    return journeys


def _headers(journey: Journey) -> dict[str, str]:
    return {
        "User-Agent": journey.user_agent,
        "X-Forwarded-For": journey.ip,
        "Accept-Language": journey.accept_language,
    }


def _expect(response: httpx.Response, status: int, step: str, tally: SentTally) -> bool:
    if response.status_code == status:
        return True
    with tally.lock:
        tally.failures.append(
            f"{step}: expected {status}, got {response.status_code} {response.text[:200]}"
        )
    return False


def _send_journey(
    client: httpx.Client, ingest_url: str, journey: Journey, tally: SentTally
) -> None:
    tenant = journey.tenant
    sig = _core.sign_click(tenant.hmac_secret, journey.destination, key_prefix=tenant.key_prefix)
    params = {"url": journey.destination, "sig": sig, **journey.subs, "click_id": journey.click_id}
    headers = _headers(journey)

    click = client.get(f"{ingest_url}/t", params=params, headers=headers)
    if not _expect(click, 307, "click", tally):
        return
    location = click.headers.get("location", "")
    ad_click_id = parse_qs(urlsplit(location).query).get("ad_click_id", [""])[-1]
    with tally.lock:
        counts = tally.tenant(tenant.key_prefix)
        if journey.is_bot:
            counts.bot_clicks += 1
        else:
            counts.human_clicks += 1
            counts.clicks_by_sub1[journey.subs["sub1"]] += 1
    if journey.is_bot:
        return
    if not ad_click_id:
        with tally.lock:
            tally.failures.append(f"click: redirect has no ad_click_id: {location[:200]}")
        return

    beacon = orjson.dumps(
        {"k": tenant.key_prefix, "t": "pageview", "u": location, "c": ad_click_id}
    )
    landing = client.post(
        f"{ingest_url}/t/auto",
        content=beacon,
        headers={**headers, "Content-Type": "text/plain;charset=UTF-8"},
    )
    if _expect(landing, 204, "beacon", tally):
        with tally.lock:
            tally.tenant(tenant.key_prefix).pageviews += 1

    if not journey.converts:
        return
    postback = client.get(
        f"{ingest_url}/p",
        params={
            "key_prefix": tenant.key_prefix,
            "click_id": journey.click_id,
            "amount": journey.amount,
        },
        headers=headers,
    )
    if _expect(postback, 200, "postback", tally):
        with tally.lock:
            tally.tenant(tenant.key_prefix).postbacks += 1


def send_journeys(
    client: httpx.Client,
    ingest_url: str,
    journeys: list[Journey],
    tally: SentTally,
    *,
    concurrency: int,
) -> None:
    """Send every journey, `concurrency` at a time; each journey's requests stay in order."""
    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        futures = [pool.submit(_send_journey, client, ingest_url, j, tally) for j in journeys]
        for future in futures:
            future.result()


def send_bad_links(
    client: httpx.Client,
    ingest_url: str,
    tenants: list[Tenant],
    agents: UserAgents,
    *,
    tampered: int,
    expired: int,
    rng: random.Random,
    tally: SentTally,
) -> None:
    """Follow tampered and expired signed links; ingest must reject each with 403 and record nothing."""
    now = int(time.time())
    cases = [("tampered", i) for i in range(tampered)] + [("expired", i) for i in range(expired)]
    for kind, index in cases:
        tenant = tenants[index % len(tenants)]
        destination = rng.choice(DESTINATIONS)
        if kind == "tampered":
            sig = _core.sign_click(tenant.hmac_secret, destination, key_prefix=tenant.key_prefix)
            # Send the signed link with another destination, as an edited link would be.
            destination = "https://attacker.example/phish"
            expected = "403 invalid_signature"
            params = {"url": destination, "sig": sig}
        else:
            expires_at = now - 3600 - index
            sig = _core.sign_click(
                tenant.hmac_secret, destination, key_prefix=tenant.key_prefix, expires_at=expires_at
            )
            expected = "403 signature_expired"
            params = {"url": destination, "sig": sig, "exp": str(expires_at)}
        response = client.get(
            f"{ingest_url}/t", params=params, headers={"User-Agent": agents.pick_browser(rng)}
        )
        try:
            code = response.json()["error"]["code"]
        except (ValueError, KeyError, TypeError):
            code = "no_error_body"
        with tally.lock:
            tally.rejects_expected[expected] += 1
            tally.rejects_seen[f"{response.status_code} {code}"] += 1
