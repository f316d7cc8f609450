"""Extension codecs against the best pure-Python composition of the same work.

Each group times `tracker._core` and a Python baseline built from well-kept
libraries (stdlib hmac + compare_digest, cryptography's AESGCM, uuid_utils,
orjson, zstandard) on the same inputs in the same run:

- verify: one click signature check with one covered param and an expiry;
- decrypt: one `d` blob with two hidden params;
- uuid7: one id as text;
- build: one event of 8 params to JSON;
- request: the single-click path, verify + uuid7 + build;
- batch: a 1,000-event `/batch` body parsed, validated, stamped, grouped by
  partition and encoded as zstd record batches;
- encode: only the record batch encoding of those 1,000 stamped events, the
  zstd share of the batch figure.

Run: `pytest bench/test_codec.py -p no:cacheprovider --benchmark-only
--benchmark-timer=time.process_time --benchmark-json=bench/results/codec.json`.
CPU time rather than wall time keeps figures comparable on a shared machine. The
summary with ratios goes to bench/results/codec.md.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import os
import re
import struct
import time
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest
import uuid_utils
import zstandard
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from tracker import _core

RESULTS = Path(__file__).parent / "results" / "codec.md"
SECRET = bytes(range(32))
KEY = bytes(range(32, 64))
DESTINATION = "https://shop.example/products/shoes/running?utm_source=newsletter"
COVERED = [("sub_id", "a1b2c3d4")]
EXPIRES_AT = 4_000_000_000
NOW = 1_800_000_000
REQUEST = {
    "ip": "203.0.113.45",
    "user_agent": "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 Chrome/120.0",
    "referer": "https://news.example/today",
    "accept_language": "en-GB,en;q=0.9",
    "request_path": "/t",
    "request_host": "t.example",
}
PARAMS = [
    ("key_prefix", "acme"),
    ("utm_source", "newsletter"),
    ("utm_medium", "email"),
    ("utm_campaign", "spring_sale_2026"),
    ("page", "/products/shoes/running"),
    ("sub_id", "a1b2c3d4"),
    ("variant", "B"),
    ("session", "7f3e9a2c-1b4d-4e8f-9a6c-2d5e8f1a3b7c"),
]
BATCH_EVENT = {
    "event_type": "page_view",
    "params": dict(PARAMS),
    "user_agent": REQUEST["user_agent"],
    "ip": "198.51.100.23",
}
BATCH_BODY = orjson.dumps([BATCH_EVENT] * 1000)
TENANTS = frozenset({"acme", "beta"})
PARTITIONS = 8
LIMITS = _core.EventLimits()
EVENT_TYPE = re.compile(r"[A-Za-z0-9_.:-]{1,64}")
SIG = _core.sign_click(
    SECRET, DESTINATION, key_prefix="acme", params=COVERED, expires_at=EXPIRES_AT
)
D = _core.encrypt_destination(
    KEY, 1, DESTINATION, key_prefix="acme", params=[("sub", "42"), ("cid", "x")]
)
STAMPED = [_core.build_event("page_view", PARAMS, limits=LIMITS, **REQUEST)[1] for _ in range(1000)]
PARSER = _core.BatchParser(
    limits=LIMITS,
    max_events=10_000,
    max_body_bytes=16 << 20,
    partitions=PARTITIONS,
    known_tenants=TENANTS,
)
CIPHER = AESGCM(KEY)
COMPRESSOR = zstandard.ZstdCompressor(level=1, write_checksum=True)
means: dict[str, float] = {}
LOAD_AT_START = os.getloadavg()


def python_verify(sig: str) -> int:
    prefix, _, digest = sig.rpartition("_")
    if len(digest) != 64 or digest.lower() != digest:
        raise ValueError("malformed sig")
    covered = sorted(COVERED, key=lambda pair: pair[0].encode())
    message = b"tracker-click-v1" + struct.pack(">I", len(prefix)) + prefix.encode()
    encoded = DESTINATION.encode()
    message += struct.pack(">I", len(encoded)) + encoded
    message += struct.pack(">QI", EXPIRES_AT, len(covered))
    for name, value in covered:
        message += struct.pack(">I", len(name)) + name.encode()
        message += struct.pack(">I", len(value)) + value.encode()
    expected = hmac.new(SECRET, message, hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected, digest):
        raise ValueError("bad sig")
    if NOW > EXPIRES_AT:
        raise ValueError("expired")
    return 0


def python_decrypt(d: str) -> tuple[str, list[tuple[str, str]], int]:
    prefix, _, blob = d.partition(".")
    raw = base64.urlsafe_b64decode(blob + "=" * (-len(blob) % 4))
    aad = b"tracker-d-v1" + bytes([len(prefix)]) + prefix.encode() + raw[:2]
    plaintext = CIPHER.decrypt(raw[2:14], raw[14:], aad)
    expires_at, count = struct.unpack_from(">QH", plaintext)
    offset = 10
    params = []
    for _ in range(count):
        (name_len,) = struct.unpack_from(">H", plaintext, offset)
        name = plaintext[offset + 2 : offset + 2 + name_len].decode()
        offset += 2 + name_len
        (value_len,) = struct.unpack_from(">H", plaintext, offset)
        value = plaintext[offset + 2 : offset + 2 + value_len].decode()
        offset += 2 + value_len
        params.append((name, value))
    return plaintext[offset:].decode(), params, expires_at


def python_build(params: list[tuple[str, str]]) -> tuple[str, bytes]:
    event_type = "click"
    if not EVENT_TYPE.fullmatch(event_type):
        raise ValueError("event_type")
    merged = dict(params)
    if len(merged) > LIMITS.max_params:
        raise ValueError("params")
    for key, value in merged.items():
        if len(key) > LIMITS.max_key_len or len(value) > LIMITS.max_value_len:
            raise ValueError("param")
    event_id = str(uuid_utils.uuid7())
    document = {
        "event_id": event_id,
        "event_type": event_type,
        "timestamp": time.time_ns() // 1_000_000,
        **REQUEST,
        "params": merged,
    }
    return event_id, orjson.dumps(document)


def extension_build(params: list[tuple[str, str]]) -> tuple[str, bytes]:
    return _core.build_event("click", params, limits=LIMITS, **REQUEST)


@functools.lru_cache(maxsize=1024)
def python_partition(key_prefix: str) -> int:
    value = 0xCBF29CE484222325
    for byte in key_prefix.encode():
        value = ((value ^ byte) * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return value % PARTITIONS


def python_batch(body: bytes) -> tuple[list[str], list[tuple[int, int, bytes]]]:
    document = orjson.loads(body)
    events = document if isinstance(document, list) else document["events"]
    now = time.time_ns() // 1_000_000
    grouped: dict[int, list[bytes]] = {}
    event_ids = []
    for event in events:
        params = event["params"]
        key_prefix = params.get("key_prefix")
        if key_prefix not in TENANTS or not EVENT_TYPE.fullmatch(event["event_type"]):
            continue
        if len(params) > LIMITS.max_params:
            continue
        if any(
            not isinstance(value, str)
            or len(key) > LIMITS.max_key_len
            or len(value) > LIMITS.max_value_len
            for key, value in params.items()
        ):
            continue
        event_id = str(uuid_utils.uuid7())
        stamped = {
            "event_id": event_id,
            "event_type": event["event_type"],
            "timestamp": now,
            "ip": event.get("ip", REQUEST["ip"]),
            "user_agent": event.get("user_agent", REQUEST["user_agent"]),
            "referer": event.get("referer", REQUEST["referer"]),
            "accept_language": event.get("accept_language", REQUEST["accept_language"]),
            "request_path": "/batch",
            "request_host": REQUEST["request_host"],
            "params": params,
        }
        grouped.setdefault(python_partition(key_prefix), []).append(orjson.dumps(stamped))
        event_ids.append(event_id)
    records = []
    for partition in sorted(grouped):
        lines = grouped[partition]
        payload = b"\n".join(lines) + b"\n"
        blob = b"\x01" + struct.pack(">I", len(lines)) + COMPRESSOR.compress(payload)
        records.append((partition, len(lines), blob))
    return event_ids, records


def extension_batch(body: bytes) -> _core.ParsedBatch:
    return PARSER.parse(body, **{**REQUEST, "request_path": "/batch"})


def python_request() -> bytes:
    python_verify(SIG)
    return python_build(PARAMS)[1]


def extension_request() -> bytes:
    _core.verify_click([SECRET], DESTINATION, SIG, params=COVERED, expires_at=EXPIRES_AT, now=NOW)
    return extension_build(PARAMS)[1]


CASES = {
    ("verify", "extension"): lambda: _core.verify_click(
        [SECRET], DESTINATION, SIG, params=COVERED, expires_at=EXPIRES_AT, now=NOW
    ),
    ("verify", "python"): lambda: python_verify(SIG),
    ("decrypt", "extension"): lambda: _core.decrypt_destination(KEY, D, now=NOW),
    ("decrypt", "python"): lambda: python_decrypt(D),
    ("uuid7", "extension"): _core.uuid7,
    ("uuid7", "python"): lambda: str(uuid_utils.uuid7()),
    ("build", "extension"): lambda: extension_build(PARAMS),
    ("build", "python"): lambda: python_build(PARAMS),
    ("request", "extension"): extension_request,
    ("request", "python"): python_request,
    ("batch", "extension"): lambda: extension_batch(BATCH_BODY),
    ("batch", "python"): lambda: python_batch(BATCH_BODY),
    ("encode", "extension"): lambda: _core.encode_record_batch(STAMPED),
    ("encode", "python"): lambda: (
        b"\x01" + struct.pack(">I", len(STAMPED)) + COMPRESSOR.compress(b"\n".join(STAMPED) + b"\n")
    ),
}


def test_baselines_do_the_same_work() -> None:
    assert python_verify(SIG) == 0
    assert CASES[("verify", "extension")]() == 0
    assert python_decrypt(D)[0] == _core.decrypt_destination(KEY, D, now=NOW).destination
    _extension_id, extension_json = extension_build(PARAMS)
    _python_id, python_json = python_build(PARAMS)
    extension_event, python_event = orjson.loads(extension_json), orjson.loads(python_json)
    for event in (extension_event, python_event):
        event.pop("event_id")
        event.pop("timestamp")
    assert extension_event == python_event
    parsed = extension_batch(BATCH_BODY)
    python_ids, python_records = python_batch(BATCH_BODY)
    assert parsed.accepted == len(python_ids) == 1000
    assert [(p, c) for p, c, _ in parsed.records] == [(p, c) for p, c, _ in python_records]


@pytest.mark.parametrize(
    ("group", "side"), sorted(CASES), ids=[f"{group}-{side}" for group, side in sorted(CASES)]
)
def test_codec(benchmark, group: str, side: str) -> None:
    benchmark.group = group
    benchmark(CASES[(group, side)])
    stats = getattr(benchmark, "stats", None)
    if stats is not None:
        means[f"{group}/{side}"] = stats.stats.mean


@pytest.fixture(scope="module", autouse=True)
def summary() -> Iterator[None]:
    """Write bench/results/codec.md once every group was timed in this run."""
    yield
    if len(means) == len(CASES):
        write_summary()


def format_load(load: tuple[float, float, float]) -> str:
    return ", ".join(f"{value:.2f}" for value in load)


def write_summary() -> None:
    lines = [
        "# Codec benchmarks: tracker._core against pure Python",
        "",
        "Command: `pytest bench/test_codec.py -p no:cacheprovider --benchmark-only "
        "--benchmark-timer=time.process_time --benchmark-json=bench/results/codec.json`.",
        "Machine: 2 CPU cores shared with other work; CPU time per call (process_time),",
        "mean of pytest-benchmark rounds. Python baseline: stdlib hmac + compare_digest,",
        "cryptography AESGCM, uuid_utils.uuid7, orjson, zstandard level 1, same inputs.",
        f"Load average (1, 5, 15 min): {format_load(LOAD_AT_START)} at the start, "
        f"{format_load(os.getloadavg())} at the end.",
        "",
        "| work | extension | python | python / extension |",
        "|---|---|---|---|",
    ]
    for group in ("verify", "decrypt", "uuid7", "build", "request", "batch", "encode"):
        extension = means[f"{group}/extension"]
        python = means[f"{group}/python"]
        lines.append(
            f"| {group} | {extension * 1e6:,.2f} µs | {python * 1e6:,.2f} µs | {python / extension:.2f}x |"
        )
    events_per_second = 1000 / means["batch/extension"]
    python_events = 1000 / means["batch/python"]
    lines += [
        "",
        f"Batch parse-and-stamp of 1,000-event bodies (~{len(BATCH_BODY) // 1000} bytes per event, "
        f"8 params): extension {events_per_second:,.0f} events/s on one core, "
        f"Python {python_events:,.0f} events/s.",
        f"Of each batch, zstd level 1 encoding of the {sum(map(len, STAMPED)) // 1000}-byte "
        f"stamped events takes {means['encode/extension'] / means['batch/extension']:.0%}.",
        f"Single-request path (verify + uuid7 + build): "
        f"{means['request/python'] / means['request/extension']:.2f}x faster than Python.",
        "",
    ]
    RESULTS.write_text("\n".join(lines), encoding="utf-8")
