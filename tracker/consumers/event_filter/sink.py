"""The event filter sink: `events` in, `events-clean` and `events-filtered` out.

Each event passes, in order: validation (invalid events go to dead letters), bot
detection from the user agent, the tenant's rules (drop or tag), then the rate limits
per tenant and per (tenant, IP). Kept events are published to `events-clean` on the
same partition, unchanged unless a tag rule added `params._tag`. Dropped events are
published to `events-filtered` with one extra top-level field, `filter_reason`, whose
value is `bot`, `rate_tenant`, `rate_ip` or `rule:<rule_id>`.

The sink works on columns read from the raw documents (`tracker.consumers.columns`):
bot verdicts are taken once per distinct user agent and the limiters count per
distinct key. Kept events are forwarded as the bytes they came in. An event is
decoded into a dict only for its tenant's rules, a tag or `events-filtered`.

Drop counts per tenant, hour and reason go to the registry's `filter_drops` in the
same transaction as the batch's offset, and the runtime resumes from that offset, so
counters stay exact across crashes. Publishing to the two topics happens before that
transaction, so a crash in between republishes the batch; consumers of those topics
deduplicate on `event_id`. The rate limiter's counts live in memory, so after a
restart the window starts empty, and a batch retried after a transient failure is
counted again, which can only make the limits stricter within that window.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson

from tracker._core import encode_record_batch
from tracker.broker.base import TOPIC_EVENTS, TOPIC_EVENTS_CLEAN, TOPIC_EVENTS_FILTERED
from tracker.consumers.columns import Column, EventColumns, read_columns
from tracker.consumers.event_filter.bots import BotDetector
from tracker.consumers.event_filter.ratelimit import (
    SlidingWindowLimiter,
    key_hashes,
    pair_hashes,
)
from tracker.consumers.event_filter.rules import CompiledRule
from tracker.consumers.runtime import Batch, Sink, SinkContext
from tracker.errors import RetryableSinkError
from tracker.registry.rules import (
    TenantLimits,
    filter_offsets,
    load_compiled_rules,
    load_limits,
    record_drops,
)
from tracker.settings import Env

__all__ = ["EventFilterSink", "FilterSettings"]

logger = logging.getLogger(__name__)

TAG_PARAM = "_tag"
# The event fields the filter reads. Rules, which may need any field, decode the event.
FIELDS = ("params.key_prefix", "ip", "user_agent")


@dataclass(frozen=True, slots=True)
class FilterSettings:
    """Rate limit defaults, window and rule reload interval of the event filter."""

    tenant_limit: int = 600_000
    ip_limit: int = 1_200
    window_seconds: int = 60
    slot_seconds: int = 5
    reload_seconds: float = 10.0
    drop_bots: bool = True

    @classmethod
    def from_env(cls, env: Env) -> FilterSettings:
        window = env.int("FILTER_RATE_WINDOW_SECONDS", 60, minimum=1, maximum=3600)
        slot = env.int("FILTER_RATE_SLOT_SECONDS", 5, minimum=1, maximum=window)
        if window % slot:
            from tracker.errors import ConfigError

            raise ConfigError(
                "FILTER_RATE_SLOT_SECONDS",
                f"must divide FILTER_RATE_WINDOW_SECONDS ({window}), got {slot}",
            )
        return cls(
            tenant_limit=env.int("FILTER_RATE_TENANT_LIMIT", 600_000, minimum=0),
            ip_limit=env.int("FILTER_RATE_IP_LIMIT", 1_200, minimum=0),
            window_seconds=window,
            slot_seconds=slot,
            reload_seconds=env.float("FILTER_RULES_RELOAD_SECONDS", 10.0, minimum=0.1),
            drop_bots=env.bool("FILTER_DROP_BOTS", True),
        )


class EventFilterSink(Sink):
    """Routes each event of `events` to `events-clean` or, with a reason, to `events-filtered`."""

    name = "event-filter"
    source_topic = TOPIC_EVENTS
    decode_events = False

    def __init__(self, settings: FilterSettings) -> None:
        self.settings = settings
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="filter-registry")
        self._registry: Any = None
        self._broker: Any = None
        self._bots: BotDetector | None = None
        self._rules: dict[str, list[CompiledRule]] = {}
        self._limits: dict[str, TenantLimits] = {}
        self._loaded_at = float("-inf")
        self._tenant_rate = SlidingWindowLimiter(
            window_seconds=settings.window_seconds, slot_seconds=settings.slot_seconds
        )
        self._ip_rate = SlidingWindowLimiter(
            window_seconds=settings.window_seconds, slot_seconds=settings.slot_seconds
        )

    async def open(self, context: SinkContext) -> None:
        self._broker = context.broker
        self._registry = await self._call(lambda: context.registry)
        self._bots = await asyncio.to_thread(BotDetector)
        await self._reload(force=True)

    async def close(self) -> None:
        self._executor.shutdown(wait=True)

    async def stored_offsets(self) -> dict[int, int]:
        return await self._call(
            lambda: filter_offsets(self._registry.connection(), self.name, self.source_topic)
        )

    async def process(self, batch: Batch) -> None:
        await self._reload()
        assert self._bots is not None
        columns = read_columns(batch.raw, FIELDS)
        for index, problem in columns.problems.items():
            batch.dead_letter(index, problem)

        # `candidate` marks the events still to be kept; `reasons` collects the drops.
        tenants = columns["params.key_prefix"]
        candidate = columns.valid.copy()
        reasons: dict[int, str] = {}
        if self.settings.drop_bots:
            self._drop_bots(columns["user_agent"], candidate, reasons)
        decoded: dict[int, dict[str, Any]] = {}
        tagged: dict[int, list[str]] = {}
        if self._rules:
            self._apply_tenant_rules(batch.raw, tenants, candidate, reasons, decoded, tagged)
        kept = self._rate_limit(columns, candidate, reasons)

        await self._publish(batch, kept, reasons, decoded, tagged)

        drops: Counter[tuple[str, int, str]] = Counter()
        if reasons:
            hours = (columns.timestamps // 3_600_000 * 3600).tolist()
            tenant_codes = tenants.codes.tolist()
            for index, reason in reasons.items():
                drops[(tenants.values[tenant_codes[index]], hours[index], reason)] += 1
        try:
            await self._call(
                lambda: record_drops(
                    self._registry.connection(),
                    drops,
                    consumer=self.name,
                    topic=self.source_topic,
                    partition=batch.partition,
                    last_offset=batch.last_offset,
                )
            )
        except sqlite3.OperationalError as error:
            raise RetryableSinkError(f"registry write failed: {error}") from error
        logger.debug(
            "Filtered batch.",
            extra={
                "partition": batch.partition,
                "kept": len(kept),
                "dropped": sum(drops.values()),
            },
        )

    def _drop_bots(self, agents: Column, candidate: np.ndarray, reasons: dict[int, str]) -> None:
        """Drop candidates whose user agent is a bot; each distinct agent is checked once."""
        assert self._bots is not None
        is_bot = self._bots.is_bot
        verdicts = np.fromiter(
            (is_bot(agent) for agent in agents.values), dtype=bool, count=len(agents.values)
        )
        bots = verdicts[agents.codes] & candidate
        if bots.any():
            for index in np.flatnonzero(bots).tolist():
                reasons[index] = "bot"
            candidate &= ~bots

    def _apply_tenant_rules(
        self,
        raw: list[bytes],
        tenants: Column,
        candidate: np.ndarray,
        reasons: dict[int, str],
        decoded: dict[int, dict[str, Any]],
        tagged: dict[int, list[str]],
    ) -> None:
        """Run the rules of tenants that have any, on their candidates decoded into dicts."""
        with_rules = [code for code, tenant in enumerate(tenants.values) if tenant in self._rules]
        if not with_rules:
            return
        for index in np.flatnonzero(candidate & np.isin(tenants.codes, with_rules)).tolist():
            event = decoded[index] = orjson.loads(raw[index])
            rules = self._rules[tenants.values[tenants.codes[index]]]
            reason = self._apply_rules(rules, event, index, tagged)
            if reason is not None:
                reasons[index] = reason
                candidate[index] = False

    def _apply_rules(
        self,
        rules: list[CompiledRule],
        event: dict[str, Any],
        index: int,
        tagged: dict[int, list[str]],
    ) -> str | None:
        for rule in rules:
            if not rule.matches(event):
                continue
            if rule.action == "drop":
                return f"rule:{rule.rule_id}"
            tagged.setdefault(index, []).append(rule.tag or "")
        return None

    def _rate_limit(
        self, columns: EventColumns, candidate: np.ndarray, reasons: dict[int, str]
    ) -> list[int]:
        """Apply the tenant limit, then the per-IP limit, to candidates; return the kept ones."""
        indexes = np.flatnonzero(candidate)
        if len(indexes) == 0:
            return []
        tenants = columns["params.key_prefix"]
        tenant_limits, ip_limits = self._limits_for(tenants.values)
        tenant_hashes = key_hashes(tenants.values)
        tenant_codes = tenants.codes[indexes]
        timestamps = columns.timestamps[indexes]

        admitted = self._tenant_rate.admit_hashed(
            tenant_hashes, tenant_codes, timestamps, tenant_limits[tenant_codes]
        )
        for index in indexes[~admitted].tolist():
            reasons[index] = "rate_tenant"
        indexes = indexes[admitted]
        if len(indexes) == 0:
            return []

        # One limiter key per distinct (tenant, IP) pair of the batch, hashed from the
        # hashes of its two parts.
        ips = columns["ip"]
        ip_count = len(ips.values)
        tenant_codes = tenants.codes[indexes]
        pairs = tenant_codes.astype(np.int64) * ip_count + ips.codes[indexes]
        distinct_pairs, pair_codes = np.unique(pairs, return_inverse=True)
        hashes = pair_hashes(
            tenant_hashes[distinct_pairs // ip_count],
            key_hashes(ips.values)[distinct_pairs % ip_count],
        )
        admitted = self._ip_rate.admit_hashed(
            hashes, pair_codes, columns.timestamps[indexes], ip_limits[tenant_codes]
        )
        for index in indexes[~admitted].tolist():
            reasons[index] = "rate_ip"
        return indexes[admitted].tolist()

    def _limits_for(self, tenants: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """Return the tenant and per-IP limit of each tenant: its override, else the default."""
        tenant_limits, ip_limits = [], []
        for tenant in tenants:
            override = self._limits.get(tenant)
            tenant_limit = override.tenant_limit if override is not None else None
            ip_limit = override.ip_limit if override is not None else None
            tenant_limits.append(
                self.settings.tenant_limit if tenant_limit is None else tenant_limit
            )
            ip_limits.append(self.settings.ip_limit if ip_limit is None else ip_limit)
        return np.array(tenant_limits, dtype=np.int64), np.array(ip_limits, dtype=np.int64)

    async def _publish(
        self,
        batch: Batch,
        kept: list[int],
        reasons: dict[int, str],
        decoded: dict[int, dict[str, Any]],
        tagged: dict[int, list[str]],
    ) -> None:
        """Publish kept events to `events-clean` and dropped ones to `events-filtered`.

        A kept event goes out as the document it came in, unless a tag rule changed it.
        """
        raw = batch.raw
        if tagged:
            clean = [
                self._tagged(decoded[index], tagged[index]) if index in tagged else raw[index]
                for index in kept
            ]
        else:
            clean = [raw[index] for index in kept]
        filtered = [
            orjson.dumps(
                {**(decoded.get(index) or orjson.loads(raw[index])), "filter_reason": reason}
            )
            for index, reason in sorted(reasons.items())
        ]
        if clean:
            await self._broker.publish(
                TOPIC_EVENTS_CLEAN, batch.partition, [encode_record_batch(clean)]
            )
        if filtered:
            await self._broker.publish(
                TOPIC_EVENTS_FILTERED, batch.partition, [encode_record_batch(filtered)]
            )

    @staticmethod
    def _tagged(event: dict[str, Any], tags: list[str]) -> bytes:
        params = {**event["params"], TAG_PARAM: ",".join(tags)}
        return orjson.dumps({**event, "params": params})

    async def _reload(self, *, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._loaded_at < self.settings.reload_seconds:
            return
        self._loaded_at = now
        try:
            (rules, failed), limits = await self._call(
                lambda: (load_compiled_rules(self._registry), load_limits(self._registry))
            )
        except sqlite3.OperationalError as error:
            logger.warning(
                "Reloading filter rules failed; keeping the loaded ones.",
                extra={"error": str(error)},
            )
            return
        if failed:
            logger.error("Skipped filter rules that do not compile.", extra={"rule_ids": failed})
        self._rules = rules
        self._limits = limits

    async def _call(self, function: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self._executor, function)
