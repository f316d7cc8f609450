"""The `tracker replay` command: re-publish a time range of the Delta archive to a topic."""

from __future__ import annotations

import asyncio
import datetime
import json

import typer

from tracker.broker.base import TOPIC_EVENTS_REPLAY
from tracker.errors import ConfigError
from tracker.settings import load_env

__all__ = ["replay"]


def _parse_time(option: str, value: str) -> int:
    """Return Unix milliseconds from digits (already ms) or an ISO 8601 time (UTC if naive)."""
    text = value.strip()
    if text.isdigit():
        return int(text)
    try:
        moment = datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ConfigError(
            option, f"expected Unix milliseconds or ISO 8601, got {text[:50]!r}"
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=datetime.UTC)
    return int(moment.timestamp() * 1000)


def replay(
    start: str = typer.Option(
        ..., "--from", help="Start of the range (inclusive): ISO 8601 or Unix ms."
    ),
    end: str = typer.Option(..., "--to", help="End of the range (exclusive): ISO 8601 or Unix ms."),
    tenant: str | None = typer.Option(
        None, "--tenant", help="Key prefix of one tenant; all when omitted."
    ),
    topic: str = typer.Option(TOPIC_EVENTS_REPLAY, "--topic", help="Topic to publish to."),
    dry_run: bool = typer.Option(
        False, "--dry-run", help="Only count the events that would be published."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the report as JSON."),
) -> None:
    """Re-publish archived events so the hot or warm tier can be rebuilt after an outage.

    Example: tracker replay --from 2026-12-01T00:00Z --to 2026-12-02T00:00Z --tenant demo
    then: HOT_SOURCE_TOPIC=events-replay tracker consume hot-writer
    or: WARM_SOURCE_TOPIC=events-replay tracker consume warm-aggregator

    Events keep their event_id and timestamp; the hot writer, the warm aggregator and the
    stats ledger skip the ones they already hold (docs/consumers.md, "Rebuilding").
    """
    from tracker.consumers.archiver import ArchiveSettings
    from tracker.replay import count_events

    env = load_env()
    start_ms = _parse_time("--from", start)
    end_ms = _parse_time("--to", end)
    archive = ArchiveSettings.from_env(env)
    uri = archive.table_uri("events")

    if dry_run:
        events = count_events(
            uri, archive.storage_options, start_ms=start_ms, end_ms=end_ms, tenant=tenant
        )
        report = {"dry_run": True, "events": events, "topic": topic}
    else:
        done = asyncio.run(
            _publish(env, uri, archive.storage_options, topic, start_ms, end_ms, tenant)
        )
        report = {
            "dry_run": False,
            "events": done.events,
            "record_batches": done.record_batches,
            "partitions": done.partitions,
            "topic": done.topic,
        }
    if as_json:
        print(json.dumps(report))
    elif dry_run:
        print(f"{report['events']} events would be published to {topic}")
    else:
        print(
            f"published {report['events']} events in {report['record_batches']} record batches "
            f"to {topic} ({report['partitions']} partitions)"
        )


async def _publish(env, uri, storage_options, topic, start_ms, end_ms, tenant):
    from tracker.broker import open_broker
    from tracker.broker.settings import BrokerSettings
    from tracker.replay import replay_events

    broker = open_broker(BrokerSettings.from_env(env))
    await broker.connect()
    try:
        return await replay_events(
            broker,
            uri,
            storage_options,
            topic=topic,
            start_ms=start_ms,
            end_ms=end_ms,
            tenant=tenant,
        )
    finally:
        await broker.close()
