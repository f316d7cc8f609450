"""Coverage-guided fuzzing of every decoder of tracker._core with atheris.

Each input picks one decoder and feeds it the rest of the bytes. A decoder may
return or raise its documented exception; anything else (another exception, a
crash, a hang) is a finding. Atheris instruments only Python code, so coverage
guidance covers the harness branches (which decoder, which outcome) but not the
native code, which runs uninstrumented; most inputs are effectively random.

Run standalone: `python tests/core/fuzz_decoders.py -max_total_time=300`
(libFuzzer flags). tests/core/test_fuzz.py runs a short bounded session.
"""

from __future__ import annotations

import contextlib
import sys

import atheris

with atheris.instrument_imports():
    import orjson

    from tracker import _core

KEY = bytes(range(32))
LIMITS = _core.EventLimits(max_params=8, max_key_len=16, max_value_len=64, max_field_len=64)
PARSER = _core.BatchParser(
    limits=LIMITS, max_events=64, max_body_bytes=64 * 1024, partitions=4, known_tenants=["acme"]
)
REQUEST = {
    "ip": "203.0.113.7",
    "user_agent": "fuzz",
    "referer": "",
    "accept_language": "",
    "request_path": "/batch",
    "request_host": "t.example",
}
VALID_D = _core.encrypt_destination(KEY, 1, "https://example.com/", key_prefix="acme")
VALID_BATCH = _core.encode_record_batch([b'{"a":1}', b'{"b":2}'])
VALID_BODY = orjson.dumps([{"event_type": "click", "params": {"key_prefix": "acme"}}])


@atheris.instrument_func
def mutate(seed: bytes, provider: atheris.FuzzedDataProvider) -> bytes:
    """Overwrite a few bytes of a valid seed, so inputs get past the first checks."""
    mutated = bytearray(seed)
    for _ in range(provider.ConsumeIntInRange(0, 4)):
        if not mutated:
            break
        position = provider.ConsumeIntInRange(0, len(mutated) - 1)
        mutated[position] = provider.ConsumeIntInRange(0, 255)
    cut = provider.ConsumeIntInRange(0, len(mutated))
    return bytes(mutated[:cut]) + provider.ConsumeBytes(provider.ConsumeIntInRange(0, 64))


@atheris.instrument_func
def run_decoder(choice: int, provider: atheris.FuzzedDataProvider) -> None:
    if choice == 0:
        sig = provider.ConsumeUnicodeNoSurrogates(100)
        with contextlib.suppress(_core.SignatureError):
            _core.verify_click([KEY], "https://example.com/", sig, now=0)
    elif choice == 1:
        d = provider.ConsumeUnicodeNoSurrogates(300)
        try:
            _core.blob_header(d)
            _core.decrypt_destination(KEY, d, now=0)
        except _core.DecryptionError:
            pass
    elif choice == 2:
        d = mutate(VALID_D.encode(), provider).decode("latin-1")
        with contextlib.suppress(_core.DecryptionError):
            _core.decrypt_destination(KEY, d, now=0)
    elif choice == 3:
        body = provider.ConsumeBytes(4096)
        with contextlib.suppress(_core.BatchError):
            PARSER.parse(body, **REQUEST)
    elif choice == 4:
        body = mutate(VALID_BODY, provider)
        with contextlib.suppress(_core.BatchError):
            PARSER.parse(body, **REQUEST)
    elif choice == 5:
        with contextlib.suppress(_core.RecordBatchError):
            _core.decode_record_batch(mutate(VALID_BATCH, provider))
    elif choice == 6:
        with contextlib.suppress(_core.CodecError):
            _core.uuid7_timestamp_ms(provider.ConsumeUnicodeNoSurrogates(40))
    else:
        params = [
            (provider.ConsumeUnicodeNoSurrogates(20), provider.ConsumeUnicodeNoSurrogates(80))
            for _ in range(provider.ConsumeIntInRange(0, 10))
        ]
        event_type = provider.ConsumeUnicodeNoSurrogates(70)
        try:
            _, document = _core.build_event(event_type, params, limits=LIMITS, **REQUEST)
        except _core.EventError:
            return
        event = orjson.loads(document)
        if event["params"] != dict(params):
            raise AssertionError("event params differ from the given pairs")


def test_one_input(data: bytes) -> None:
    provider = atheris.FuzzedDataProvider(data)
    run_decoder(provider.ConsumeIntInRange(0, 7), provider)


def main() -> None:
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
