"""Checks behind `tracker doctor`: configuration, each configured backend, and the ports.

Every check returns a `Finding` that says what was checked, whether it passed, what was
found (a version, a path, a count) and, when it failed, how to fix it. No check changes
state that a running platform depends on: the registry is opened read-only when it
exists, and the Delta table and the broker are only read.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import os
import socket
import sqlite3
import tempfile
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from tracker.errors import ConfigError, RegistryError, TrackerError
from tracker.settings import Env

__all__ = ["Finding", "run_checks"]

# (component, "module:class") of every settings dataclass a component reads at start-up.
SETTINGS = (
    ("broker", "tracker.broker.settings:BrokerSettings"),
    ("ingest", "tracker.ingest.settings:IngestSettings"),
    ("api", "tracker.api.settings:ApiSettings"),
    ("query", "tracker.query.settings:QuerySettings"),
    ("sse", "tracker.sse.settings:SseSettings"),
    ("consumers", "tracker.consumers.settings:ConsumerSettings"),
    ("event-filter", "tracker.consumers.event_filter.sink:FilterSettings"),
    ("stats", "tracker.consumers.stats:StatsSettings"),
    ("archiver", "tracker.consumers.archiver:ArchiveSettings"),
    ("webhooks", "tracker.consumers.webhooks:WebhookSettings"),
    ("warm-aggregator", "tracker.consumers.warm_aggregator:WarmAggregatorSettings"),
    ("hot-writer", "tracker.consumers.hot_writer:HotWriterSettings"),
)


@dataclass(frozen=True)
class Finding:
    """The outcome of one check: `status` is ok, warn or fail."""

    check: str
    status: str
    detail: str
    fix: str = ""

    def as_dict(self) -> dict[str, str]:
        return asdict(self)


def _load_class(target: str) -> type:
    module_name, _, class_name = target.partition(":")
    return getattr(importlib.import_module(module_name), class_name)


def check_settings(env: Env) -> list[Finding]:
    findings = []
    for component, target in SETTINGS:
        if component == "hot-writer" and env.str("HOT_DSN") is None:
            findings.append(Finding(f"config {component}", "ok", "off (HOT_DSN is not set)"))
            continue
        try:
            _load_class(target).from_env(env)
        except ConfigError as error:
            findings.append(
                Finding(
                    f"config {component}",
                    "fail",
                    str(error),
                    f"set {error.variable} to a valid value (see .env.example)",
                )
            )
        else:
            findings.append(Finding(f"config {component}", "ok", "valid"))
    return findings


def check_registry(env: Env) -> Finding:
    data_dir = env.path("TRACKER_DATA_DIR", ".tracker")
    turso_url = env.str("TURSO_URL")
    if turso_url:
        try:
            from tracker.registry.db import connect

            connection = connect(
                env.path("REGISTRY_PATH", data_dir / "registry.db"),
                turso_url=turso_url,
                turso_token=env.str("TURSO_AUTH_TOKEN"),
            )
            version = connection.execute("SELECT sqlite_version()").fetchone()[0]
        except (ImportError, RegistryError, sqlite3.Error) as error:
            return Finding(
                "registry",
                "fail",
                f"cannot reach Turso at {turso_url}: {type(error).__name__}: {error}"[:300],
                "check TURSO_URL and TURSO_AUTH_TOKEN",
            )
        return Finding("registry", "ok", f"Turso/libSQL {version} at {turso_url}")

    path = env.path("REGISTRY_PATH", data_dir / "registry.db")
    if not path.exists():
        parent = path.parent if path.parent.exists() else data_dir.parent
        if not os.access(parent, os.W_OK):
            return Finding(
                "registry",
                "fail",
                f"{path} does not exist and {parent} is not writable",
                "set TRACKER_DATA_DIR or REGISTRY_PATH to a writable location",
            )
        return Finding(
            "registry",
            "warn",
            f"{path} does not exist yet",
            "run `tracker up` or `tracker tenants create`",
        )
    try:
        connection = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)
        try:
            migrations = connection.execute("SELECT count(*) FROM schema_migrations").fetchone()[0]
            tenants = connection.execute("SELECT count(*) FROM tenants").fetchone()[0]
        finally:
            connection.close()
    except sqlite3.Error as error:
        return Finding(
            "registry",
            "fail",
            f"{path}: {error}",
            "restore the file or point REGISTRY_PATH elsewhere",
        )
    return Finding(
        "registry",
        "ok",
        f"SQLite {sqlite3.sqlite_version} at {path}: {migrations} migrations, {tenants} tenants",
    )


async def _broker_health(env: Env) -> Finding:
    from tracker.broker import open_broker
    from tracker.broker.settings import BrokerSettings

    settings = BrokerSettings.from_env(env)
    if settings.backend == "noop":
        return Finding(
            "broker",
            "warn",
            "noop backend: every event is dropped",
            "set BROKER=local or BROKER=iggy outside benchmarks",
        )
    broker = open_broker(settings)
    try:
        await asyncio.wait_for(broker.connect(), timeout=settings.iggy_timeout_seconds + 5)
        healthy = await broker.healthy()
    except (TimeoutError, TrackerError, OSError) as error:
        where = settings.iggy_url if settings.backend == "iggy" else str(settings.log_dir)
        return Finding(
            "broker",
            "fail",
            f"{settings.backend} broker at {where} failed: {type(error).__name__}: {error}"[:300],
            "start the Iggy server or fix IGGY_URL"
            if settings.backend == "iggy"
            else "check TRACKER_DATA_DIR",
        )
    finally:
        with contextlib.suppress(TrackerError, OSError):
            await broker.close()
    where = settings.iggy_url if settings.backend == "iggy" else str(settings.log_dir)
    if not healthy:
        return Finding(
            "broker", "fail", f"{settings.backend} broker at {where} is not healthy", "see its logs"
        )
    return Finding(
        "broker", "ok", f"{settings.backend} at {where}, {settings.partitions} partitions"
    )


def check_broker(env: Env) -> Finding:
    try:
        return asyncio.run(_broker_health(env))
    except ConfigError as error:
        return Finding("broker", "fail", str(error), f"set {error.variable} to a valid value")


async def _postgres_version(dsn: str) -> str:
    import asyncpg

    connection = await asyncpg.connect(dsn, timeout=5)
    try:
        return await connection.fetchval("SHOW server_version")
    finally:
        await connection.close()


def check_hot(env: Env) -> Finding:
    dsn = env.str("HOT_DSN")
    if dsn is None:
        return Finding("hot tier", "ok", "off (HOT_DSN is not set)")
    try:
        version = asyncio.run(_postgres_version(dsn))
    except Exception as error:  # asyncpg raises many unrelated types for connect failures
        return Finding(
            "hot tier",
            "fail",
            f"cannot connect with HOT_DSN: {type(error).__name__}: {error}"[:300],
            "start PostgreSQL or fix HOT_DSN (postgresql://user@host:port/db)",
        )
    return Finding("hot tier", "ok", f"PostgreSQL-wire server {version}")


def check_archive(env: Env) -> Finding:
    from tracker.consumers.archiver import ArchiveSettings

    try:
        settings = ArchiveSettings.from_env(env)
    except ConfigError as error:
        return Finding("archive", "fail", str(error), f"set {error.variable} to a valid value")
    uri = settings.table_uri("events")
    from deltalake import DeltaTable

    try:
        if DeltaTable.is_deltatable(uri, storage_options=settings.storage_options or None):
            version = DeltaTable(uri, storage_options=settings.storage_options or None).version()
            return Finding("archive", "ok", f"Delta table at {uri}, version {version}")
    except OSError as error:
        return Finding(
            "archive", "fail", f"{uri}: {error}"[:300], "check ARCHIVE_URI and the S3 credentials"
        )
    if "://" not in uri or uri.startswith("file://"):
        root = Path(uri.removeprefix("file://"))
        existing = next((p for p in (root, *root.parents) if p.exists()), Path("/"))
        if not os.access(existing, os.W_OK):
            return Finding(
                "archive",
                "fail",
                f"{existing} is not writable",
                "set TRACKER_DATA_DIR or ARCHIVE_URI",
            )
    return Finding(
        "archive", "warn", f"no Delta table at {uri} yet", "start the archiver (tracker up does)"
    )


def check_warm(env: Env) -> Finding:
    warm_dir = env.path("WARM_DIR", env.path("TRACKER_DATA_DIR", ".tracker") / "warm")
    existing = next((p for p in (warm_dir, *warm_dir.parents) if p.exists()), Path("/"))
    try:
        with tempfile.NamedTemporaryFile(dir=existing):
            pass
    except OSError as error:
        return Finding(
            "warm store", "fail", f"{existing} is not writable: {error.strerror}", "set WARM_DIR"
        )
    return Finding(
        "warm store", "ok", f"{warm_dir} ({'exists' if warm_dir.exists() else 'will be created'})"
    )


def check_ports(env: Env) -> list[Finding]:
    host = env.str("HOST", "127.0.0.1") or "127.0.0.1"
    findings = []
    for name, variable, default, health in (
        ("ingest", "PORT", 3030, "/health"),
        ("api", "API_PORT", 8787, "/api/health"),
        ("sse", "SSE_PORT", 3031, "/health"),
    ):
        try:
            port = env.int(variable, default, minimum=1, maximum=65535)
        except ConfigError as error:
            findings.append(
                Finding(f"port {name}", "fail", str(error), f"set {variable} to 1-65535")
            )
            continue
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            try:
                probe.bind((host, port))
            except OSError:
                findings.append(_port_in_use(name, host, port, variable, health))
                continue
        findings.append(Finding(f"port {name}", "ok", f"{host}:{port} is free"))
    return findings


def _port_in_use(name: str, host: str, port: int, variable: str, health: str) -> Finding:
    import httpx

    shown = f"[{host}]" if ":" in host else host
    try:
        response = httpx.get(f"http://{shown}:{port}{health}", timeout=2)
        if response.status_code == 200:
            return Finding(f"port {name}", "ok", f"{host}:{port} is served by a running {name}")
    except httpx.HTTPError:
        pass
    return Finding(
        f"port {name}",
        "fail",
        f"{host}:{port} is in use by another program",
        f"stop it or set {variable}",
    )


def run_checks(env: Env) -> list[Finding]:
    """Run every check in a fixed order and return the findings."""
    findings = check_settings(env)
    steps: list[Callable[[Env], Finding | list[Finding]]] = [
        check_registry,
        check_broker,
        check_hot,
        check_archive,
        check_warm,
        check_ports,
    ]
    for step in steps:
        result = step(env)
        findings.extend(result if isinstance(result, list) else [result])
    return findings
