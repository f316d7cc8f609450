"""Event filter state in the registry: tenant rules, rate limit overrides and drop counters.

Rules are compiled when saved (`add_rule`), so a bad regex, CIDR, operator or field
is rejected with a RuleError naming it and never reaches the filter. Drop counters
are written by the event filter together with the offsets they cover, in one
transaction, so a redelivered batch is never counted twice.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from tracker.consumers.event_filter.rules import CompiledRule, RuleError, compile_rule
from tracker.errors import NotFound, RegistryError

__all__ = [
    "DROP_REASONS",
    "DropCount",
    "Rule",
    "RuleError",
    "TenantLimits",
    "add_rule",
    "delete_rule",
    "drop_counts",
    "filter_offsets",
    "list_rules",
    "load_compiled_rules",
    "load_limits",
    "record_drops",
    "set_limits",
]

DROP_REASONS = ("bot", "rate_tenant", "rate_ip")
"""Fixed drop reasons besides `rule:<rule_id>`."""

MAX_DEFINITION_BYTES = 64 * 1024
MAX_RULES_PER_TENANT = 200


@dataclass(frozen=True, slots=True)
class Rule:
    """A stored rule with its definition decoded."""

    rule_id: int
    key_prefix: str
    name: str
    definition: dict[str, Any]
    enabled: bool
    created_at: int
    updated_at: int


@dataclass(frozen=True, slots=True)
class TenantLimits:
    """Rate limit overrides of one tenant; None keeps the filter's default."""

    tenant_limit: int | None
    ip_limit: int | None


@dataclass(frozen=True, slots=True)
class DropCount:
    """Events dropped for one reason in one hour."""

    hour: int
    reason: str
    count: int


def add_rule(registry: Any, key_prefix: str, definition: Any, *, name: str = "") -> Rule:
    """Validate, compile and store a rule for the tenant; raise RuleError or NotFound.

    `definition` is a dict or its JSON text.
    """
    if isinstance(definition, (str, bytes)):
        if len(definition) > MAX_DEFINITION_BYTES:
            raise RuleError("rule", f"definition longer than {MAX_DEFINITION_BYTES} bytes")
        try:
            definition = orjson.loads(definition)
        except orjson.JSONDecodeError as error:
            raise RuleError("rule", f"invalid JSON: {str(error)[:100]}") from None
    compile_rule(definition, key_prefix=key_prefix)
    text = orjson.dumps(definition).decode()
    if len(text) > MAX_DEFINITION_BYTES:
        raise RuleError("rule", f"definition longer than {MAX_DEFINITION_BYTES} bytes")
    if len(name) > 200:
        raise RuleError("name", "longer than 200 characters")
    now = int(time.time())

    with registry.transaction() as connection:
        if (
            connection.execute(
                "SELECT 1 FROM tenants WHERE key_prefix = ?", (key_prefix,)
            ).fetchone()
            is None
        ):
            raise NotFound(f"tenant {str(key_prefix)[:50]!r} not found")
        (count,) = connection.execute(
            "SELECT count(*) FROM filter_rules WHERE key_prefix = ?", (key_prefix,)
        ).fetchone()
        if count >= MAX_RULES_PER_TENANT:
            raise RuleError(
                "rule", f"tenant already has the maximum of {MAX_RULES_PER_TENANT} rules"
            )
        cursor = connection.execute(
            "INSERT INTO filter_rules (key_prefix, name, definition, enabled, created_at, updated_at)"
            " VALUES (?, ?, ?, 1, ?, ?)",
            (key_prefix, name, text, now, now),
        )
        rule_id = cursor.lastrowid
    return Rule(rule_id, key_prefix, name, definition, True, now, now)


def list_rules(registry: Any, key_prefix: str | None = None) -> list[Rule]:
    """Return the rules of one tenant, or of every tenant, in id order."""
    query = "SELECT rule_id, key_prefix, name, definition, enabled, created_at, updated_at FROM filter_rules"
    values: tuple[Any, ...] = ()
    if key_prefix is not None:
        query += " WHERE key_prefix = ?"
        values = (key_prefix,)
    rows = registry.connection().execute(query + " ORDER BY rule_id", values).fetchall()
    return [
        Rule(rule_id, prefix, name, orjson.loads(definition), bool(enabled), created, updated)
        for rule_id, prefix, name, definition, enabled, created, updated in rows
    ]


def delete_rule(registry: Any, rule_id: int, *, key_prefix: str | None = None) -> None:
    """Delete a rule, optionally only if it belongs to `key_prefix`; raise NotFound otherwise."""
    query = "DELETE FROM filter_rules WHERE rule_id = ?"
    values: tuple[Any, ...] = (rule_id,)
    if key_prefix is not None:
        query += " AND key_prefix = ?"
        values = (rule_id, key_prefix)
    with registry.transaction() as connection:
        if connection.execute(query, values).rowcount == 0:
            raise NotFound(f"filter rule {rule_id} not found")


def load_compiled_rules(registry: Any) -> tuple[dict[str, list[CompiledRule]], list[int]]:
    """Return the enabled rules compiled and grouped by tenant, and the ids that failed to compile.

    Saved rules always compile, so a failure means the row was changed outside `add_rule`.
    """
    rules: dict[str, list[CompiledRule]] = {}
    failed = []
    for rule in list_rules(registry):
        if not rule.enabled:
            continue
        try:
            compiled = compile_rule(
                rule.definition, rule_id=rule.rule_id, key_prefix=rule.key_prefix
            )
        except RuleError:
            failed.append(rule.rule_id)
            continue
        rules.setdefault(rule.key_prefix, []).append(compiled)
    return rules, failed


def set_limits(
    registry: Any, key_prefix: str, *, tenant_limit: int | None, ip_limit: int | None
) -> None:
    """Store the tenant's rate limit overrides (events per filter window); None keeps the default."""
    for field, value in (("tenant_limit", tenant_limit), ("ip_limit", ip_limit)):
        if value is not None and (not isinstance(value, int) or value < 0):
            raise RegistryError(f"{field}: expected a non-negative integer, got {value!r}")
    with registry.transaction() as connection:
        try:
            connection.execute(
                "INSERT INTO filter_limits (key_prefix, tenant_limit, ip_limit, updated_at) VALUES (?, ?, ?, ?)"
                " ON CONFLICT (key_prefix) DO UPDATE SET tenant_limit = excluded.tenant_limit,"
                " ip_limit = excluded.ip_limit, updated_at = excluded.updated_at",
                (key_prefix, tenant_limit, ip_limit, int(time.time())),
            )
        except sqlite3.IntegrityError:
            raise NotFound(f"tenant {str(key_prefix)[:50]!r} not found") from None


def load_limits(registry: Any) -> dict[str, TenantLimits]:
    """Return every tenant's rate limit overrides, keyed by key prefix."""
    rows = (
        registry.connection()
        .execute("SELECT key_prefix, tenant_limit, ip_limit FROM filter_limits")
        .fetchall()
    )
    return {prefix: TenantLimits(tenant_limit, ip_limit) for prefix, tenant_limit, ip_limit in rows}


def record_drops(
    connection: Any,
    counts: Mapping[tuple[str, int, str], int],
    *,
    consumer: str,
    topic: str,
    partition: int,
    last_offset: int,
) -> None:
    """Add drop counts keyed by (key_prefix, hour, reason) and store the offset, in one transaction."""
    now = int(time.time())
    connection.execute("BEGIN IMMEDIATE")
    try:
        connection.executemany(
            "INSERT INTO filter_drops (key_prefix, hour, reason, count) VALUES (?, ?, ?, ?)"
            " ON CONFLICT (key_prefix, hour, reason) DO UPDATE SET count = count + excluded.count",
            [(prefix, hour, reason, count) for (prefix, hour, reason), count in counts.items()],
        )
        connection.execute(
            "INSERT INTO filter_offsets (consumer, topic, partition, committed, updated_at) VALUES (?, ?, ?, ?, ?)"
            " ON CONFLICT (consumer, topic, partition) DO UPDATE"
            " SET committed = max(committed, excluded.committed), updated_at = excluded.updated_at",
            (consumer, topic, partition, last_offset, now),
        )
        connection.execute("COMMIT")
    except BaseException:
        connection.execute("ROLLBACK")
        raise


def filter_offsets(connection: Any, consumer: str, topic: str) -> dict[int, int]:
    """Return the offset stored with the drop counters, per partition."""
    rows = connection.execute(
        "SELECT partition, committed FROM filter_offsets WHERE consumer = ? AND topic = ?",
        (consumer, topic),
    ).fetchall()
    return {int(partition): int(committed) for partition, committed in rows}


def drop_counts(
    registry: Any, key_prefix: str, *, start_hour: int, end_hour: int
) -> list[DropCount]:
    """Return the tenant's dropped events per hour and reason, hours inclusive, in order."""
    if end_hour < start_hour:
        raise RegistryError(f"end_hour {end_hour} is before start_hour {start_hour}")
    rows = (
        registry.connection()
        .execute(
            "SELECT hour, reason, count FROM filter_drops WHERE key_prefix = ? AND hour >= ? AND hour <= ?"
            " ORDER BY hour, reason",
            (key_prefix, start_hour, end_hour),
        )
        .fetchall()
    )
    return [DropCount(hour, reason, count) for hour, reason, count in rows]
