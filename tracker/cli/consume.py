"""The `tracker consume NAME` command: run one stream consumer, or print its lag."""

from __future__ import annotations

import asyncio
import logging
import signal

import orjson
import typer

from tracker.settings import load_env

__all__ = ["consume"]

logger = logging.getLogger(__name__)

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")


def consume(
    name: str = typer.Argument(
        ...,
        help="Consumer to run, for example event-filter, stats or hot-writer.",
    ),
    status: bool = typer.Option(
        False,
        "--status",
        help="Print committed offset, end offset and lag per partition, then exit.",
    ),
    as_json: bool = typer.Option(
        False, "--json", help="With --status, print one JSON object instead of a table."
    ),
) -> None:
    """Run consumer NAME until SIGTERM or SIGINT; it finishes and commits the batch in hand.

    Logs go to stderr as JSON lines at LOG_LEVEL (default INFO).
    """
    if status:
        asyncio.run(_print_status(name, as_json))
        return
    from tracker.api.logs import configure_logging

    configure_logging(load_env().choice("LOG_LEVEL", "INFO", LOG_LEVELS))
    asyncio.run(_run(name))


async def _open_broker(env):
    from tracker.broker import open_broker
    from tracker.broker.settings import BrokerSettings

    broker = open_broker(BrokerSettings.from_env(env))
    await broker.connect()
    return broker


async def _run(name: str) -> None:
    from tracker.consumers import create_sink
    from tracker.consumers.runtime import ConsumerRuntime
    from tracker.consumers.settings import ConsumerSettings

    env = load_env()
    settings = ConsumerSettings.from_env(env)
    sink = create_sink(name, env)
    broker = await _open_broker(env)
    try:
        runtime = ConsumerRuntime(sink, broker, settings)
        if settings.metrics_port:
            runtime.metrics.serve(settings.metrics_host, settings.metrics_port)
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, runtime.request_stop)
        await runtime.run()
    finally:
        await broker.close()


async def _print_status(name: str, as_json: bool) -> None:
    from tracker.consumers import create_sink
    from tracker.consumers.runtime import partition_status

    env = load_env()
    sink = create_sink(name, env)
    broker = await _open_broker(env)
    try:
        rows = await partition_status(broker, sink.source_topic, sink.name)
    finally:
        await broker.close()

    if as_json:
        document = {
            "consumer": sink.name,
            "topic": sink.source_topic,
            "lag": sum(row.lag for row in rows),
            "partitions": [
                {
                    "partition": row.partition,
                    "committed": row.committed,
                    "end": row.end,
                    "lag": row.lag,
                }
                for row in rows
            ],
        }
        typer.echo(orjson.dumps(document).decode())
        return

    typer.echo(f"consumer {sink.name}  topic {sink.source_topic}")
    typer.echo(f"{'partition':>9} {'committed':>10} {'end':>10} {'lag':>8}")
    for row in rows:
        committed = "-" if row.committed is None else str(row.committed)
        end = "-" if row.end is None else str(row.end)
        typer.echo(f"{row.partition:>9} {committed:>10} {end:>10} {row.lag:>8}")
    typer.echo(f"{'total':>9} {'':>10} {'':>10} {sum(row.lag for row in rows):>8}")
