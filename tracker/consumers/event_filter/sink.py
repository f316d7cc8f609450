"""The event filter sink: `events` in, `events-clean` and `events-filtered` out.

Each event passes, in order: validation (invalid events go to dead letters), bot
detection from the user agent, the tenant's rules (drop or tag), then the rate limits
per tenant and per (tenant, IP). Kept events are published to `events-clean` on the
same partition, unchanged unless a tag rule added `params._tag`. Dropped events are
published to `events-filtered` with one extra top-level field, `filter_reason`, whose
value is `bot`, `rate_tenant`, `rate_ip` or `rule:<rule_id>`.

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

import orjson

from tracker._core import encode_record_batch
from tracker.broker.base import TOPIC_EVENTS, TOPIC_EVENTS_CLEAN, TOPIC_EVENTS_FILTERED
from tracker.consumers.event_filter.bots import BotDetector
from tracker.consumers.event_filter.ratelimit import SlidingWindowLimiter
from tracker.consumers.event_filter.rules import CompiledRule
from tracker.consumers.events import event_problem, hour_of
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
        is_bot = self._bots.is_bot
        drop_bots = self.settings.drop_bots

        reasons: list[str | None] = [None] * len(batch.events)
        candidates: list[int] = []
        tagged: dict[int, list[str]] = {}
        for index, event in enumerate(batch.events):
            problem = event_problem(event)
            if problem is not None:
                batch.dead_letter(index, problem)
                reasons[index] = ""
                continue
            if drop_bots and is_bot(event.get("user_agent", "")):
                reasons[index] = "bot"
                continue
            rules = self._rules.get(event["params"]["key_prefix"])
            if rules:
                reason = self._apply_rules(rules, event, index, tagged)
                if reason is not None:
                    reasons[index] = reason
                    continue
            candidates.append(index)

        candidates = self._rate_limit(batch.events, candidates, reasons)
        await self._publish(batch, reasons, tagged)

        drops: Counter[tuple[str, int, str]] = Counter()
        for index, reason in enumerate(reasons):
            if reason:
                event = batch.events[index]
                drops[(event["params"]["key_prefix"], hour_of(event["timestamp"]), reason)] += 1
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
                "kept": len(candidates),
                "dropped": sum(drops.values()),
            },
        )

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
        self, events: list[dict[str, Any]], candidates: list[int], reasons: list[str | None]
    ) -> list[int]:
        """Apply the tenant limit, then the per-IP limit, to candidates; return the kept ones."""
        tenants = [events[index]["params"]["key_prefix"] for index in candidates]
        timestamps = [events[index]["timestamp"] for index in candidates]
        tenant_limits, ip_limits = self._limits_for(set(tenants))

        admitted = self._tenant_rate.admit(
            tenants, timestamps, [tenant_limits[tenant] for tenant in tenants]
        )
        kept = [position for position, ok in enumerate(admitted) if ok]
        for position, ok in enumerate(admitted):
            if not ok:
                reasons[candidates[position]] = "rate_tenant"
        if not kept:
            return []

        ip_keys = [
            f"{tenants[position]}\x00{events[candidates[position]].get('ip', '')}"
            for position in kept
        ]
        admitted = self._ip_rate.admit(
            ip_keys,
            [timestamps[position] for position in kept],
            [ip_limits[tenants[position]] for position in kept],
        )
        result = []
        for position, ok in zip(kept, admitted, strict=True):
            if ok:
                result.append(candidates[position])
            else:
                reasons[candidates[position]] = "rate_ip"
        return result

    def _limits_for(self, tenants: set[str]) -> tuple[dict[str, int], dict[str, int]]:
        """Return the tenant and per-IP limits of each tenant: its override, else the default."""
        tenant_limits, ip_limits = {}, {}
        for tenant in tenants:
            override = self._limits.get(tenant)
            tenant_limit = override.tenant_limit if override is not None else None
            ip_limit = override.ip_limit if override is not None else None
            tenant_limits[tenant] = (
                self.settings.tenant_limit if tenant_limit is None else tenant_limit
            )
            ip_limits[tenant] = self.settings.ip_limit if ip_limit is None else ip_limit
        return tenant_limits, ip_limits

    async def _publish(
        self, batch: Batch, reasons: list[str | None], tagged: dict[int, list[str]]
    ) -> None:
        clean: list[bytes] = []
        filtered: list[bytes] = []
        for index, reason in enumerate(reasons):
            if reason == "":
                continue
            if reason is not None:
                filtered.append(orjson.dumps({**batch.events[index], "filter_reason": reason}))
            elif index in tagged:
                event = batch.events[index]
                params = {**event["params"], TAG_PARAM: ",".join(tagged[index])}
                clean.append(orjson.dumps({**event, "params": params}))
            else:
                clean.append(batch.raw[index])
        if clean:
            await self._broker.publish(
                TOPIC_EVENTS_CLEAN, batch.partition, [encode_record_batch(clean)]
            )
        if filtered:
            await self._broker.publish(
                TOPIC_EVENTS_FILTERED, batch.partition, [encode_record_batch(filtered)]
            )

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
