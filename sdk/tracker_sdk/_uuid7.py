"""UUIDv7 event ids (RFC 9562 section 5.7), strictly increasing within the process.

Ids made in the same millisecond count up in the 12-bit `rand_a` field from a random
start (RFC 9562 section 6.2, method 1). When the counter overflows, the timestamp field
moves one millisecond ahead. The platform deduplicates on these ids, so a batch that is
sent again after a timeout is counted once.
"""

from __future__ import annotations

import os
import threading
import time
import uuid
from collections.abc import Callable

_MAX_COUNTER = 0xFFF


class Uuid7Generator:
    """Thread-safe source of monotonic UUIDv7 strings; `clock_ms` returns Unix milliseconds."""

    def __init__(self, clock_ms: Callable[[], int] | None = None) -> None:
        self._clock_ms = clock_ms or time.time_ns
        self._scale = clock_ms is None
        self._lock = threading.Lock()
        self._last_ms = -1
        self._counter = 0

    def __call__(self) -> str:
        now = self._clock_ms()
        if self._scale:
            now //= 1_000_000
        with self._lock:
            if now > self._last_ms:
                self._last_ms = now
                # Start below the midpoint so a burst has room to count up.
                self._counter = int.from_bytes(os.urandom(2)) & 0x7FF
            elif self._counter < _MAX_COUNTER:
                self._counter += 1
            else:
                self._last_ms += 1
                self._counter = 0
            millis, counter = self._last_ms, self._counter

        rand_b = int.from_bytes(os.urandom(8)) & ((1 << 62) - 1)
        value = (millis & ((1 << 48) - 1)) << 80
        value |= 0x7 << 76 | counter << 64 | 0b10 << 62 | rand_b
        return str(uuid.UUID(int=value))


uuid7 = Uuid7Generator()
"""Process-wide generator used by the clients."""
