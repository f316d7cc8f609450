"""TrackerClient against a scripted local HTTP server standing in for the ingest service."""

from __future__ import annotations

import random
import subprocess
import sys
import textwrap
import threading
import time
import uuid
from email.utils import formatdate

import pytest
from conftest import RecordingSleep, Reply, ScriptedServer, free_port
from tracker_sdk import DeliveryError, InvalidEventError, RetryPolicy, TrackerClient


def make_client(
    server: ScriptedServer, sleep: RecordingSleep | None = None, **options
) -> TrackerClient:
    options.setdefault("flush_interval", 30.0)
    options.setdefault("retry", RetryPolicy(max_retries=3, base_delay=0.5, max_delay=8.0))
    return TrackerClient(server.url, "acme1", sleep=sleep, rng=random.Random(7), **options)


def test_client_flushes_full_batches(server, sleep):
    client = make_client(server, sleep, batch_size=3)
    ids = [client.track("signup", {"user_id": str(n)}) for n in range(7)]

    server.wait_for_requests(2)
    batches = server.batch_event_lists()
    assert [len(batch) for batch in batches] == [3, 3]

    client.close()
    batches = server.batch_event_lists()
    assert [len(batch) for batch in batches] == [3, 3, 1]
    sent = [event for batch in batches for event in batch]
    assert [event["event_id"] for event in sent] == ids
    assert {event["params"]["key_prefix"] for event in sent} == {"acme1"}
    assert [event["params"]["user_id"] for event in sent] == [str(n) for n in range(7)]
    assert client.stats.delivered == 7


def test_client_event_ids_are_increasing_uuid7(server):
    client = make_client(server, batch_size=500)
    ids = [client.track("view") for _ in range(300)]
    client.close()

    parsed = [uuid.UUID(event_id) for event_id in ids]
    assert all(value.version == 7 for value in parsed)
    assert ids == sorted(ids)
    assert len(set(ids)) == len(ids)


def test_client_flushes_on_interval(server):
    client = make_client(server, batch_size=100, flush_interval=0.05)
    client.track("view", {"page": "/a"})

    requests = server.wait_for_requests(1, timeout=5)
    assert requests[0].json()["events"][0]["params"]["page"] == "/a"
    client.close()


def test_client_sends_end_user_fields(server):
    client = make_client(server)
    client.track(
        "signup",
        {"plan": "pro"},
        ip="198.51.100.7",
        user_agent="Mozilla/5.0",
        referer="https://ref.example/",
        accept_language="de",
    )
    client.close()

    event = server.batch_event_lists()[0][0]
    assert event["params"] == {"plan": "pro", "key_prefix": "acme1"}
    assert event["ip"] == "198.51.100.7"
    assert event["user_agent"] == "Mozilla/5.0"
    assert event["referer"] == "https://ref.example/"
    assert event["accept_language"] == "de"


def test_client_rejects_unknown_field(server):
    client = make_client(server, raise_errors=True)
    with pytest.raises(InvalidEventError) as caught:
        client.track("signup", timestamp="1")
    assert caught.value.field == "timestamp"
    client.close()


def test_client_retries_503_with_same_ids(server, sleep):
    server.script = [Reply(503), Reply(502)]
    client = make_client(server, sleep, batch_size=2)
    client.track("a")
    client.track("b")
    client.close()

    batches = server.batch_event_lists()
    assert len(batches) == 3
    first_ids = [event["event_id"] for event in batches[0]]
    assert all([event["event_id"] for event in batch] == first_ids for batch in batches)
    assert len(sleep.delays) == 2
    assert client.stats.retries == 2
    assert client.stats.delivered == 2
    assert client.stats.failed == 0


def test_client_backoff_is_full_jitter(server, sleep):
    server.script = [Reply(500)] * 3
    client = make_client(server, sleep, batch_size=1)
    client.track("a")
    client.close()

    ceilings = [0.5, 1.0, 2.0]
    assert len(sleep.delays) == 3
    for delay, ceiling in zip(sleep.delays, ceilings, strict=True):
        assert 0.0 <= delay <= ceiling


def test_client_honours_retry_after_seconds(server, sleep):
    server.script = [Reply(429, {"error": {"code": "rate_limited"}}, {"Retry-After": "7"})]
    client = make_client(server, sleep, batch_size=1)
    client.track("a")
    client.close()

    assert sleep.delays == [7.0]
    assert client.stats.delivered == 1


def test_client_honours_retry_after_date(server, sleep):
    now = 1_800_000_000.0
    server.script = [Reply(503, None, {"Retry-After": formatdate(now + 12, usegmt=True)})]
    client = TrackerClient(
        server.url, "acme1", batch_size=1, flush_interval=30, sleep=sleep, wall_clock=lambda: now
    )
    client.track("a")
    client.close()

    assert sleep.delays == [12.0]


def test_client_caps_retry_after(server, sleep):
    server.script = [Reply(429, None, {"Retry-After": "86400"})]
    client = make_client(
        server, sleep, batch_size=1, retry=RetryPolicy(max_retries=2, max_retry_after=60.0)
    )
    client.track("a")
    client.close()

    assert sleep.delays == [60.0]


def test_client_gives_up_after_max_retries(server, sleep):
    server.default = lambda request: Reply(503)
    client = make_client(server, sleep, batch_size=2)
    client.track("a")
    client.track("b")
    client.close()

    assert len(server.requests) == 4
    assert client.stats.failed == 2
    assert client.stats.delivered == 0


def test_client_does_not_retry_400(server, sleep):
    server.script = [Reply(400, {"error": {"code": "invalid_body", "field": "events"}})]
    client = make_client(server, sleep, batch_size=1)
    client.track("a")
    client.close()

    assert len(server.requests) == 1
    assert sleep.delays == []
    assert client.stats.failed == 1


def test_client_counts_rejected_without_retry(server, sleep):
    server.script = [
        Reply(
            200,
            {
                "accepted": 2,
                "rejected": [
                    {"index": 1, "field": "params.key_prefix", "reason": "unknown tenant"}
                ],
            },
        )
    ]
    client = make_client(server, sleep, batch_size=3)
    for name in ("a", "b", "c"):
        client.track(name)
    client.close()

    assert len(server.requests) == 1
    assert client.stats.delivered == 2
    assert client.stats.rejected == 1
    assert client.stats.failed == 0


def test_client_splits_batch_on_413(server, sleep):
    def limit_two(request):
        events = request.json()["events"]
        if len(events) > 2:
            return Reply(413, {"error": {"code": "body_too_large"}})
        return Reply(200, {"accepted": len(events), "rejected": []})

    server.default = limit_two
    client = make_client(server, sleep, batch_size=8)
    ids = [client.track("a") for _ in range(8)]
    client.close()

    delivered = [
        event["event_id"]
        for batch in server.batch_event_lists()
        if len(batch) <= 2
        for event in batch
    ]
    assert sorted(delivered) == sorted(ids)
    assert client.stats.delivered == 8


def test_client_retries_connection_errors(sleep):
    closed_port = free_port()
    client = TrackerClient(
        f"http://127.0.0.1:{closed_port}",
        "acme1",
        batch_size=1,
        flush_interval=30,
        sleep=sleep,
        timeout=2,
        retry=RetryPolicy(max_retries=2),
    )
    assert client.track("a") is not None
    client.close()

    assert len(sleep.delays) == 2
    assert client.stats.failed == 1


def test_client_drop_oldest_when_full(server):
    server.gate.clear()
    client = make_client(server, batch_size=2, max_buffer=4, overflow="drop_oldest")
    client.track("held", {"n": "0"})
    client.track("held", {"n": "1"})
    server.wait_for_requests(1)

    for n in range(2, 9):
        client.track("queued", {"n": str(n)})
    assert client.stats.dropped_overflow == 3

    server.gate.set()
    client.close()
    sent = [event["params"]["n"] for batch in server.batch_event_lists() for event in batch]
    assert sent == ["0", "1", "5", "6", "7", "8"]


def test_client_block_waits_for_room(server):
    server.gate.clear()
    client = make_client(server, batch_size=2, max_buffer=2, overflow="block")
    client.track("held")
    client.track("held")
    server.wait_for_requests(1)
    client.track("queued")
    client.track("queued")

    blocked = threading.Thread(target=client.track, args=("late",))
    blocked.start()
    blocked.join(0.3)
    assert blocked.is_alive()

    server.gate.set()
    blocked.join(10)
    assert not blocked.is_alive()
    client.close()
    assert client.stats.dropped_overflow == 0
    assert client.stats.delivered == 5


@pytest.mark.parametrize(
    ("event_type", "params", "field"),
    [
        ("", {}, "event_type"),
        ("has space", {}, "event_type"),
        ("x" * 65, {}, "event_type"),
        ("ok", {"k": 5}, "params.k"),
        ("ok", {"": "v"}, "params."),
        ("ok", {"k" * 129: "v"}, "params." + "k" * 50 + "..."),
        ("ok", {"k": "v" * 2049}, "params.k"),
        ("ok", {f"p{n}": "v" for n in range(64)}, "params"),
    ],
)
def test_client_rejects_invalid_event(server, event_type, params, field):
    client = make_client(server, raise_errors=True)
    with pytest.raises(InvalidEventError) as caught:
        client.track(event_type, params)
    assert caught.value.field == field
    client.close()
    assert server.requests == []


def test_client_drops_invalid_event_quietly(server):
    client = make_client(server)
    assert client.track("bad type!") is None
    client.close()

    assert client.stats.dropped_invalid == 1
    assert server.requests == []


def test_client_flush_raises_delivery_error(server, sleep):
    server.default = lambda request: Reply(401, {"error": {"code": "unauthorized"}})
    client = make_client(server, sleep, raise_errors=True)
    client.track("a")
    with pytest.raises(DeliveryError) as caught:
        client.flush(timeout=10)
    assert caught.value.failed == 1
    client.close()


def test_client_concurrent_tracking_loses_nothing(server):
    client = make_client(server, batch_size=50, max_buffer=10_000)
    ids: list[str] = []
    lock = threading.Lock()

    def produce() -> None:
        mine = [client.track("hit") for _ in range(250)]
        with lock:
            ids.extend(mine)

    threads = [threading.Thread(target=produce) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    client.close()

    sent = [event["event_id"] for batch in server.batch_event_lists() for event in batch]
    assert len(sent) == 2000
    assert sorted(sent) == sorted(ids)
    assert max(len(batch) for batch in server.batch_event_lists()) <= 50


def test_client_track_after_close_is_dropped(server):
    client = make_client(server)
    client.close()
    assert client.track("late") is None
    assert client.stats.dropped_overflow == 1


def test_client_flushes_at_exit(server):
    script = textwrap.dedent(f"""
        from tracker_sdk import TrackerClient
        client = TrackerClient({server.url!r}, "acme1", batch_size=100, flush_interval=60)
        for n in range(3):
            client.track("exit_test", {{"n": str(n)}})
    """)
    started = time.monotonic()
    subprocess.run([sys.executable, "-c", script], check=True, timeout=30)

    sent = [event["params"]["n"] for batch in server.batch_event_lists() for event in batch]
    assert sent == ["0", "1", "2"]
    assert time.monotonic() - started < 20


@pytest.mark.parametrize(
    "options",
    [
        {"batch_size": 0},
        {"flush_interval": 0},
        {"max_buffer": 1, "batch_size": 2},
        {"overflow": "drop_newest"},
    ],
)
def test_client_rejects_bad_options(options):
    with pytest.raises(ValueError):
        TrackerClient("http://127.0.0.1:9", "acme1", **options)


def test_client_rejects_bad_key_prefix():
    with pytest.raises(ValueError, match="key_prefix"):
        TrackerClient("http://127.0.0.1:9", "Bad-Prefix")
