"""Event filter: bots, rules, rate limits, drop counters and the routing between topics."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import orjson
import pytest

from tests.consumers.conftest import (
    REPO,
    broker_env,
    consumer_settings,
    encode,
    make_event,
    partition_of,
    publish,
    read_topic,
)
from tests.consumers.test_runtime import run_until
from tracker._core import encode_record_batch
from tracker.broker.base import (
    TOPIC_DEAD_LETTERS,
    TOPIC_EVENTS,
    TOPIC_EVENTS_CLEAN,
    TOPIC_EVENTS_FILTERED,
    Broker,
)
from tracker.consumers.event_filter.bots import BotDetector
from tracker.consumers.event_filter.ratelimit import SlidingWindowLimiter
from tracker.consumers.event_filter.rules import RuleError, compile_rule
from tracker.consumers.event_filter.sink import EventFilterSink, FilterSettings
from tracker.consumers.events import hour_of
from tracker.consumers.runtime import ConsumerRuntime
from tracker.errors import NotFound
from tracker.registry.db import Registry
from tracker.registry.rules import add_rule, delete_rule, drop_counts, list_rules, set_limits
from tracker.registry.tenants import create_tenant

BASE_MS = 1_770_703_200_000  # 2026-02-10 06:00:00 UTC
FIREFOX = "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:133.0) Gecko/20100101 Firefox/133.0"


@pytest.fixture(scope="module")
def detector() -> BotDetector:
    return BotDetector()


@pytest.mark.parametrize(
    "agent",
    [
        "",
        "   ",
        "curl/8.5.0",
        "Wget/1.21.4",
        "python-requests/2.32.3",
        "Python-urllib/3.11",
        "python-httpx/0.28.1",
        "aiohttp/3.9.5",
        "Go-http-client/2.0",
        "okhttp/4.12.0",
        "Java/17.0.2",
        "Apache-HttpClient/4.5.14 (Java/17.0.2)",
        "libwww-perl/6.72",
        "axios/1.7.2",
        "node-fetch/1.0 (+https://github.com/bitinn/node-fetch)",
        "undici",
        "PostmanRuntime/7.39.0",
        "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) HeadlessChrome/131.0.0.0 Safari/537.36",
        "Mozilla/5.0 (Unknown; Linux x86_64) AppleWebKit/538.1 (KHTML, like Gecko) PhantomJS/2.1.1 Safari/538.1",
        "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
        "Mozilla/5.0 (compatible; bingbot/2.0; +http://www.bing.com/bingbot.htm)",
    ],
)
def test_bot_detector_catches_bot(detector: BotDetector, agent: str) -> None:
    assert detector.is_bot(agent)


@pytest.mark.parametrize(
    "agent",
    [
        FIREFOX,
        "Mozilla/5.0 (iPhone; CPU iPhone OS 18_3_2 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko)"
        " Version/18.3.1 Mobile/15E148 Safari/604.1",
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0"
        " Safari/537.36 Edg/131.0.0.0",
        "Mozilla/5.0 (Linux; Android 14; SM-S918B) AppleWebKit/537.36 (KHTML, like Gecko)"
        " Chrome/131.0.6778.135 Mobile Safari/537.36",
    ],
)
def test_bot_detector_keeps_browser(detector: BotDetector, agent: str) -> None:
    assert not detector.is_bot(agent)


def test_bot_quality_on_packaged_data(detector: BotDetector) -> None:
    """At least 99% of crawler examples caught, at most 0.1% of browser traffic share dropped."""
    from bench.bot_quality import measure

    result = measure(detector)

    assert result.crawler_instances > 2000
    assert result.browser_agents > 5000
    assert result.crawler_recall >= 0.99
    assert result.browser_false_positive_share <= 0.001


@pytest.mark.parametrize(
    ("definition", "field", "message"),
    [
        ("not an object", "rule", "JSON object"),
        ({"action": "drop", "conditions": []}, "conditions", "non-empty"),
        ({"action": "block", "conditions": [{}]}, "action", "'block'"),
        ({"action": "drop", "match": "most", "conditions": [{}]}, "match", "'most'"),
        (
            {"action": "tag", "conditions": [{"field": "ip", "op": "equals", "value": "x"}]},
            "tag",
            "needs a tag",
        ),
        (
            {
                "action": "drop",
                "tag": "x",
                "conditions": [{"field": "ip", "op": "equals", "value": "x"}],
            },
            "tag",
            "only",
        ),
        (
            {"action": "drop", "conditions": [{"field": "cookie", "op": "equals", "value": "x"}]},
            "conditions[0].field",
            "unknown field 'cookie'",
        ),
        (
            {"action": "drop", "conditions": [{"field": "params.", "op": "equals", "value": "x"}]},
            "conditions[0].field",
            "unknown field",
        ),
        (
            {"action": "drop", "conditions": [{"field": "ip", "op": "like", "value": "x"}]},
            "conditions[0].op",
            "unknown operator 'like'",
        ),
        (
            {"action": "drop", "conditions": [{"field": "ip", "op": "equals", "value": 5}]},
            "conditions[0].value",
            "string",
        ),
        (
            {"action": "drop", "conditions": [{"field": "ip", "op": "in", "value": []}]},
            "conditions[0].value",
            "non-empty list",
        ),
        (
            {"action": "drop", "conditions": [{"field": "ip", "op": "in", "value": ["a", 1]}]},
            "conditions[0].value[1]",
            "string",
        ),
        (
            {
                "action": "drop",
                "conditions": [{"field": "user_agent", "op": "regex", "value": "(unclosed"}],
            },
            "conditions[0].value",
            "invalid regex",
        ),
        (
            {
                "action": "drop",
                "conditions": [{"field": "user_agent", "op": "regex", "value": "(a)\\1"}],
            },
            "conditions[0].value",
            "invalid regex",
        ),
        (
            {
                "action": "drop",
                "conditions": [{"field": "ip", "op": "cidr", "value": "10.0.0.0/33"}],
            },
            "conditions[0].value",
            "invalid CIDR",
        ),
        (
            {
                "action": "drop",
                "conditions": [{"field": "ip", "op": "cidr", "value": ["10.0.0.0/8", "nope"]}],
            },
            "conditions[0].value[1]",
            "invalid CIDR",
        ),
        (
            {
                "action": "drop",
                "conditions": [{"field": "referer", "op": "cidr", "value": "10.0.0.0/8"}],
            },
            "conditions[0].op",
            "only to the field 'ip'",
        ),
        (
            {
                "action": "drop",
                "conditions": [{"field": "ip", "op": "equals", "value": "x", "extra": 1}],
            },
            "conditions[0].extra",
            "unknown key",
        ),
        (
            {
                "action": "drop",
                "when": 1,
                "conditions": [{"field": "ip", "op": "equals", "value": "x"}],
            },
            "when",
            "unknown key",
        ),
    ],
)
def test_rule_compile_rejects_defect(definition: Any, field: str, message: str) -> None:
    with pytest.raises(RuleError) as caught:
        compile_rule(definition)
    assert caught.value.field == field
    assert message in str(caught.value)


def event_with(**changes: Any) -> dict[str, Any]:
    event = make_event("acme", ip="203.0.113.9", sub1="google_search")
    event.update(changes)
    return event


@pytest.mark.parametrize(
    ("condition", "matching", "other"),
    [
        (
            {"field": "event_type", "op": "equals", "value": "click"},
            event_with(),
            event_with(event_type="postback"),
        ),
        (
            {"field": "params.sub1", "op": "in", "value": ["google_search", "bing"]},
            event_with(),
            event_with(params={"key_prefix": "acme", "sub1": "x"}),
        ),
        (
            {"field": "params.sub1", "op": "prefix", "value": "google"},
            event_with(),
            event_with(params={"key_prefix": "acme"}),
        ),
        (
            {"field": "user_agent", "op": "regex", "value": "Chrome/1[0-9]{2}"},
            event_with(),
            event_with(user_agent=FIREFOX),
        ),
        (
            {"field": "ip", "op": "cidr", "value": "203.0.113.0/24"},
            event_with(),
            event_with(ip="198.51.100.1"),
        ),
        (
            {"field": "ip", "op": "cidr", "value": ["2001:db8::/32"]},
            event_with(ip="2001:db8::1"),
            event_with(ip="not an ip"),
        ),
    ],
)
def test_rule_condition_matches_only_matching(
    condition: dict[str, Any], matching: dict[str, Any], other: dict[str, Any]
) -> None:
    rule = compile_rule({"action": "drop", "conditions": [condition]})
    assert rule.matches(matching)
    assert not rule.matches(other)


def test_rule_all_and_any_combine() -> None:
    conditions = [
        {"field": "event_type", "op": "equals", "value": "click"},
        {"field": "params.sub1", "op": "equals", "value": "bing"},
    ]
    every = compile_rule({"action": "drop", "match": "all", "conditions": conditions})
    either = compile_rule({"action": "drop", "match": "any", "conditions": conditions})
    event = event_with()
    assert not every.matches(event)
    assert either.matches(event)


def test_rate_limiter_enforces_limit_per_key() -> None:
    limiter = SlidingWindowLimiter(window_seconds=10, slot_seconds=1)
    keys = ["a"] * 8 + ["b"] * 3
    admitted = limiter.admit(keys, [BASE_MS] * 11, [5] * 11)
    assert admitted == [True] * 5 + [False] * 3 + [True] * 3
    assert limiter.admit(["a"], [BASE_MS + 500], [5]) == [False]
    assert limiter.estimate("a") >= 9
    assert limiter.estimate("b") >= 3


def test_rate_limiter_window_slides_with_event_time() -> None:
    limiter = SlidingWindowLimiter(window_seconds=10, slot_seconds=1)
    assert limiter.admit(["a"] * 5, [BASE_MS] * 5, [5] * 5) == [True] * 5
    assert limiter.admit(["a"], [BASE_MS + 9_000], [5]) == [False]
    assert limiter.admit(["a"], [BASE_MS + 10_000], [5]) == [True]
    assert limiter.admit(["a"], [BASE_MS + 60_000], [1]) == [True]
    # Events older than the window neither count nor get limited.
    assert limiter.admit(["a"] * 3, [BASE_MS] * 3, [0] * 3) == [True] * 3
    assert limiter.estimate("a") == 1


def test_rate_limiter_rejects_bad_shape() -> None:
    with pytest.raises(ValueError, match="multiple of slot_seconds"):
        SlidingWindowLimiter(window_seconds=10, slot_seconds=3)


@pytest.fixture
def registry(data_dir: Path) -> Registry:
    registry = Registry(data_dir / "registry.db")
    create_tenant(registry, key_prefix="acme")
    create_tenant(registry, key_prefix="globex")
    return registry


def test_add_rule_rejects_bad_rule_when_saved(registry: Registry) -> None:
    with pytest.raises(RuleError, match="invalid regex"):
        add_rule(
            registry,
            "acme",
            {"action": "drop", "conditions": [{"field": "referer", "op": "regex", "value": "["}]},
        )
    with pytest.raises(RuleError, match="invalid JSON"):
        add_rule(registry, "acme", '{"action": ')
    with pytest.raises(NotFound, match="tenant 'nobody' not found"):
        add_rule(
            registry,
            "nobody",
            {"action": "drop", "conditions": [{"field": "ip", "op": "equals", "value": "x"}]},
        )
    assert list_rules(registry) == []


def test_rules_add_list_delete(registry: Registry) -> None:
    definition = {"action": "drop", "conditions": [{"field": "ip", "op": "equals", "value": "x"}]}
    first = add_rule(registry, "acme", definition, name="block x")
    second = add_rule(registry, "globex", json.dumps(definition))

    assert [rule.rule_id for rule in list_rules(registry)] == [first.rule_id, second.rule_id]
    assert [rule.name for rule in list_rules(registry, "acme")] == ["block x"]
    with pytest.raises(NotFound):
        delete_rule(registry, first.rule_id, key_prefix="globex")
    delete_rule(registry, first.rule_id)
    with pytest.raises(NotFound):
        delete_rule(registry, first.rule_id)
    assert [rule.rule_id for rule in list_rules(registry)] == [second.rule_id]


async def run_filter(broker: Broker, data_dir: Path, done: Any, **env: str) -> ConsumerRuntime:
    sink = EventFilterSink(
        FilterSettings(
            tenant_limit=1000, ip_limit=50, window_seconds=60, slot_seconds=5, reload_seconds=0.1
        )
    )
    runtime = ConsumerRuntime(sink, broker, consumer_settings(data_dir, **env))
    await run_until(runtime, done)
    return runtime


async def committed_all(broker: Broker, group: str = "event-filter") -> bool:
    for partition in range(broker.partitions):
        if await broker.committed(TOPIC_EVENTS, group, partition) != await broker.end_offset(
            TOPIC_EVENTS, partition
        ):
            return False
    return True


async def filter_until_committed(broker: Broker, data_dir: Path) -> None:
    state = {"done": False}

    async def watch() -> None:
        while not await committed_all(broker):
            await asyncio.sleep(0.02)
        state["done"] = True

    watcher = asyncio.create_task(watch())
    await run_filter(broker, data_dir, lambda: state["done"])
    await watcher


async def test_filter_routes_bots_rules_tags_and_rates(
    broker: Broker, data_dir: Path, registry: Registry
) -> None:
    drop_rule = add_rule(
        registry,
        "acme",
        {
            "action": "drop",
            "conditions": [{"field": "params.sub1", "op": "equals", "value": "spam"}],
        },
    )
    add_rule(
        registry,
        "acme",
        {
            "action": "tag",
            "tag": "vip",
            "conditions": [{"field": "ip", "op": "cidr", "value": "198.51.100.0/24"}],
        },
    )
    set_limits(registry, "globex", tenant_limit=5, ip_limit=None)

    human = [
        make_event("acme", timestamp=BASE_MS + i, ip=f"203.0.113.{i}", sub1="ok") for i in range(20)
    ]
    bots = [make_event("acme", timestamp=BASE_MS, user_agent="curl/8.5.0") for _ in range(3)]
    no_agent = make_event("acme", timestamp=BASE_MS)
    del no_agent["user_agent"]
    spam = [make_event("acme", timestamp=BASE_MS, sub1="spam") for _ in range(4)]
    vip = [make_event("acme", timestamp=BASE_MS, ip="198.51.100.7") for _ in range(2)]
    one_ip = [make_event("acme", timestamp=BASE_MS + 1000, ip="192.0.2.1") for _ in range(60)]
    globex = [make_event("globex", timestamp=BASE_MS, ip=f"203.0.113.{i}") for i in range(8)]
    await publish(
        broker,
        TOPIC_EVENTS,
        human + bots + [no_agent] + spam + vip + one_ip + globex,
        per_message=17,
    )

    await filter_until_committed(broker, data_dir)

    clean = await read_topic(broker, TOPIC_EVENTS_CLEAN)
    filtered = await read_topic(broker, TOPIC_EVENTS_FILTERED)
    clean_ids = {event["event_id"] for event in clean}
    reasons: dict[str, list[str]] = {}
    for event in filtered:
        reasons.setdefault(event["filter_reason"], []).append(event["event_id"])

    assert {event["event_id"] for event in human} <= clean_ids
    assert sorted(reasons["bot"]) == sorted(event["event_id"] for event in [*bots, no_agent])
    assert sorted(reasons[f"rule:{drop_rule.rule_id}"]) == sorted(
        event["event_id"] for event in spam
    )
    assert len(reasons["rate_ip"]) == 10
    assert len(reasons["rate_tenant"]) == 3
    assert len(clean) + len(filtered) == 98
    assert clean_ids.isdisjoint(event["event_id"] for event in filtered)
    tagged = [event for event in clean if event["params"].get("_tag")]
    assert sorted(event["event_id"] for event in tagged) == sorted(
        event["event_id"] for event in vip
    )
    assert all(event["params"]["_tag"] == "vip" for event in tagged)
    untouched = next(event for event in clean if event["event_id"] == human[0]["event_id"])
    assert untouched == human[0]

    hour = hour_of(BASE_MS)
    counts = {
        (row.reason, row.count)
        for row in drop_counts(registry, "acme", start_hour=hour, end_hour=hour)
    }
    assert counts == {("bot", 4), (f"rule:{drop_rule.rule_id}", 4), ("rate_ip", 10)}
    assert [
        (row.reason, row.count)
        for row in drop_counts(registry, "globex", start_hour=hour, end_hour=hour)
    ] == [("rate_tenant", 3)]


async def test_filter_dead_letters_bad_events(
    broker: Broker, data_dir: Path, registry: Registry
) -> None:
    good = make_event("acme", timestamp=BASE_MS)
    bad = [
        {**make_event("acme", timestamp=BASE_MS), "params": {"key_prefix": "acme", "sub1": 7}},
        {**make_event("acme", timestamp=BASE_MS), "user_agent": ["curl"]},
        {**make_event("acme", timestamp=BASE_MS), "params": {"sub1": "no tenant"}},
        {**make_event("acme", timestamp=BASE_MS), "referer": "r" * 50_000},
        {"event_id": "x"},
    ]
    await broker.publish(
        TOPIC_EVENTS, partition_of("acme"), [encode([good, *bad]), b"\x01\x00\x00\x00\x05junk"]
    )

    await filter_until_committed(broker, data_dir)

    assert [event["event_id"] for event in await read_topic(broker, TOPIC_EVENTS_CLEAN)] == [
        good["event_id"]
    ]
    assert await read_topic(broker, TOPIC_EVENTS_FILTERED) == []
    letters = await read_topic(broker, TOPIC_DEAD_LETTERS)
    assert [letter["reason"].split(":")[0] for letter in letters] == [
        "undecodable record batch",
        "params.sub1",
        "user_agent",
        "params.key_prefix",
        "referer",
        "event_id",
    ]


async def test_filter_dead_letters_non_object_documents(
    broker: Broker, data_dir: Path, registry: Registry
) -> None:
    good = make_event("acme", timestamp=BASE_MS)
    documents = [orjson.dumps(good), b"[1, 2]", b'{"event_id": ', b'"text"']
    await broker.publish(TOPIC_EVENTS, partition_of("acme"), [encode_record_batch(documents)])

    await filter_until_committed(broker, data_dir)

    assert [event["event_id"] for event in await read_topic(broker, TOPIC_EVENTS_CLEAN)] == [
        good["event_id"]
    ]
    letters = await read_topic(broker, TOPIC_DEAD_LETTERS)
    assert [letter["reason"] for letter in letters] == ["event is not a JSON object"] * 3
    assert [base64.b64decode(letter["payload_base64"]) for letter in letters] == documents[1:]
    assert all("event" not in letter for letter in letters)


async def test_filter_drop_counts_survive_lost_commit(
    broker: Broker, data_dir: Path, registry: Registry
) -> None:
    bots = [make_event("acme", timestamp=BASE_MS, user_agent="curl/8") for _ in range(10)]
    await publish(broker, TOPIC_EVENTS, bots, per_message=5)
    await filter_until_committed(broker, data_dir)
    partition = partition_of("acme")
    # Rewind the group as if the broker commit of the second message had been lost.
    await broker.commit(TOPIC_EVENTS, "event-filter", partition, 0)

    more = [make_event("acme", timestamp=BASE_MS, user_agent="curl/8") for _ in range(5)]
    await publish(broker, TOPIC_EVENTS, more)
    await filter_until_committed(broker, data_dir)

    hour = hour_of(BASE_MS)
    assert [
        (row.reason, row.count)
        for row in drop_counts(registry, "acme", start_hour=hour, end_hour=hour)
    ] == [("bot", 15)]
    assert len(await read_topic(broker, TOPIC_EVENTS_FILTERED)) == 15


async def test_filter_reloads_rules_while_running(
    broker: Broker, data_dir: Path, registry: Registry
) -> None:
    sink = EventFilterSink(FilterSettings(reload_seconds=0.1))
    runtime = ConsumerRuntime(sink, broker, consumer_settings(data_dir))
    task = asyncio.create_task(runtime.run())
    try:
        await publish(broker, TOPIC_EVENTS, [make_event("acme", timestamp=BASE_MS, sub1="late")])
        while len(await read_topic(broker, TOPIC_EVENTS_CLEAN)) < 1:
            await asyncio.sleep(0.02)
        rule = add_rule(
            registry,
            "acme",
            {
                "action": "drop",
                "conditions": [{"field": "params.sub1", "op": "equals", "value": "late"}],
            },
        )
        await asyncio.sleep(0.3)
        await publish(broker, TOPIC_EVENTS, [make_event("acme", timestamp=BASE_MS, sub1="late")])
        async with asyncio.timeout(30):
            while len(await read_topic(broker, TOPIC_EVENTS_FILTERED)) < 1:
                await asyncio.sleep(0.02)
    finally:
        runtime.request_stop()
        await task

    filtered = await read_topic(broker, TOPIC_EVENTS_FILTERED)
    assert [event["filter_reason"] for event in filtered] == [f"rule:{rule.rule_id}"]


def test_filter_settings_reject_bad_slot() -> None:
    from tracker.errors import ConfigError
    from tracker.settings import Env

    with pytest.raises(ConfigError, match="FILTER_RATE_SLOT_SECONDS"):
        FilterSettings.from_env(
            Env({"FILTER_RATE_WINDOW_SECONDS": "60", "FILTER_RATE_SLOT_SECONDS": "7"})
        )
    with pytest.raises(ConfigError, match="FILTER_RATE_IP_LIMIT"):
        FilterSettings.from_env(Env({"FILTER_RATE_IP_LIMIT": "-1"}))


def test_rules_cli_add_list_delete(data_dir: Path, registry: Registry) -> None:
    env = {**os.environ, **broker_env(data_dir)}
    base = [sys.executable, "-c", "from tracker.cli.main import main; main()", "rules"]
    rule = (
        '{"action": "drop", "conditions": [{"field": "ip", "op": "cidr", "value": "10.0.0.0/8"}]}'
    )

    added = subprocess.run(
        [*base, "add", "acme", rule, "--json"], env=env, cwd=REPO, capture_output=True, timeout=60
    )
    bad = subprocess.run(
        [*base, "add", "acme", rule.replace("10.0.0.0/8", "10.0.0.0/99")],
        env=env,
        cwd=REPO,
        capture_output=True,
        timeout=60,
    )
    listed = subprocess.run(
        [*base, "list", "acme", "--json"], env=env, cwd=REPO, capture_output=True, timeout=60
    )

    assert added.returncode == 0, added.stderr.decode()
    rule_id = orjson.loads(added.stdout)["rule_id"]
    assert bad.returncode == 1
    assert b"conditions[0].value: invalid CIDR '10.0.0.0/99'" in bad.stderr
    assert [row["rule_id"] for row in orjson.loads(listed.stdout)] == [rule_id]
    deleted = subprocess.run(
        [*base, "delete", str(rule_id)], env=env, cwd=REPO, capture_output=True, timeout=60
    )
    assert deleted.returncode == 0
    assert list_rules(registry) == []
