"""The archiver's memory of recently archived event ids, for dropping duplicates.

Ids stay for `window_seconds` after they were archived, and at most `max_ids` of
them are kept (the oldest go first), so memory is bounded. A duplicate that
arrives after its original left the window is archived a second time.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence

__all__ = ["RecentEventIds"]


class RecentEventIds:
    """Event ids archived recently, in the order they were archived."""

    def __init__(
        self, window_seconds: float, max_ids: int, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.window_seconds = window_seconds
        self.max_ids = max_ids
        self._clock = clock
        # dict keeps insertion order, so the oldest id is always first.
        self._ids: dict[str, float] = {}

    def __len__(self) -> int:
        return len(self._ids)

    def __contains__(self, event_id: object) -> bool:
        return event_id in self._ids

    def load(self, event_ids: Iterable[str]) -> None:
        """Remember ids read back from the table at start."""
        self.add(event_ids)

    def add(self, event_ids: Iterable[str]) -> None:
        """Remember ids that were just committed to the table."""
        now = self._clock()
        ids = self._ids
        for event_id in event_ids:
            ids[event_id] = now
        self._expire(now)

    def take_new(self, event_ids: Sequence[str], pending: set[str]) -> list[bool]:
        """Return, per id, whether it is new; new ids are added to `pending`.

        An id is new when it is not remembered, not in `pending` (buffered but not
        yet committed) and not earlier in `event_ids`.
        """
        ids = self._ids
        keep: list[bool] = []
        for event_id in event_ids:
            new = event_id not in ids and event_id not in pending
            keep.append(new)
            if new:
                pending.add(event_id)
        return keep

    def _expire(self, now: float) -> None:
        ids = self._ids
        deadline = now - self.window_seconds
        while ids:
            oldest = next(iter(ids))
            if len(ids) <= self.max_ids and ids[oldest] >= deadline:
                break
            del ids[oldest]
