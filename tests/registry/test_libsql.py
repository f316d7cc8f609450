"""The registry and the stats ledger on libSQL: a local file, a live sqld, and `tracker serve`.

The `embedded` cases open a local file through libsql_experimental and run whenever it is
installed (the `turso` extra). The `sqld` cases and the end-to-end check need a running
sqld (libsql-server) at TURSO_TEST_URL, for example `http://127.0.0.1:8080`, with
TURSO_TEST_AUTH_TOKEN if it checks tokens. They share that server's database with earlier
runs, so every case uses fresh random names.
"""

from __future__ import annotations

import os
import secrets
import sqlite3
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest

from tests.conftest import free_port
from tests.ingest.conftest import server_env, start_server, stop_server, wait_healthy
from tracker.errors import Conflict, NotFound, RegistryError
from tracker.registry.api_keys import clear_cache, create_api_key, revoke_api_key, verify_api_key
from tracker.registry.db import Registry, connect
from tracker.registry.hrana import HranaConnection
from tracker.registry.ledger import (
    _INSERT_IDS,
    committed_offsets,
    count_events,
    prune_ledger,
    record_batch,
)
from tracker.registry.libsql import LibsqlConnection
from tracker.registry.tenants import (
    create_tenant,
    get_tenant,
    load_tenant_secrets,
    retire_secret,
    rotate_aes_key,
    rotate_hmac_secret,
)
from tracker.registry.tracking_urls import (
    create_tracking_url,
    disable_tracking_url,
    enable_tracking_url,
    get_tracking_url,
    rotate_destination,
)

TURSO_TEST_URL = os.environ.get("TURSO_TEST_URL")
TURSO_TEST_AUTH_TOKEN = os.environ.get("TURSO_TEST_AUTH_TOKEN")
needs_sqld = pytest.mark.skipif(
    not TURSO_TEST_URL, reason="set TURSO_TEST_URL to a running sqld, e.g. http://127.0.0.1:8080"
)
HOUR = 3600


@pytest.fixture(params=["embedded", pytest.param("sqld", marks=needs_sqld)])
def registry_options(request, data_dir) -> dict[str, str | None]:
    """Arguments of `connect` for a local libSQL file, or for the live sqld at TURSO_TEST_URL."""
    if request.param == "embedded":
        pytest.importorskip("libsql_experimental", reason="needs the turso extra")
        return {"path": str(data_dir / "registry.db"), "engine": "libsql"}
    return {
        "path": str(data_dir / "unused.db"),
        "turso_url": TURSO_TEST_URL,
        "turso_token": TURSO_TEST_AUTH_TOKEN,
    }


@pytest.fixture
def registry(registry_options) -> Iterator[Registry]:
    handle = Registry(**registry_options)
    expected = HranaConnection if registry_options.get("turso_url") else LibsqlConnection
    assert isinstance(handle.connection(), expected)
    yield handle
    handle.close()


def new_prefix() -> str:
    return "t" + secrets.token_hex(6)


def test_tenant_create_and_rotate(registry):
    prefix = new_prefix()
    created = create_tenant(registry, key_prefix=prefix, name="Libsql", plan="pro")
    with pytest.raises(Conflict, match="already exists"):
        create_tenant(registry, key_prefix=prefix)

    rotated_hmac = rotate_hmac_secret(registry, prefix)
    rotated_aes = rotate_aes_key(registry, prefix)
    retire_secret(registry, prefix, "hmac", 0)
    tenant = get_tenant(registry, prefix)
    loaded = {row.key_prefix: row for row in load_tenant_secrets(registry)}[prefix]

    assert tenant.plan == "pro"
    assert tenant.hmac_key_ids == (1,)
    assert tenant.aes_key_ids == (0, 1)
    assert rotated_hmac.key_id == 1
    assert rotated_aes.key_id == 1
    assert loaded.hmac_secrets == (rotated_hmac.secret,)
    assert loaded.aes_keys == {1: rotated_aes.secret, 0: created.aes_key}
    with pytest.raises(Conflict, match="last active hmac"):
        retire_secret(registry, prefix, "hmac", 1)
    with pytest.raises(NotFound):
        rotate_hmac_secret(registry, new_prefix())


def test_tracking_url_rotate_and_disable(registry):
    prefix = new_prefix()
    create_tenant(registry, key_prefix=prefix)
    link = create_tracking_url(
        registry, prefix, "https://before.example/", params={"campaign": "spring"}
    )

    rotated = rotate_destination(registry, link.tu_id, "https://after.example/new")
    disabled = disable_tracking_url(registry, link.tu_id)
    enabled = enable_tracking_url(registry, link.tu_id)

    assert rotated.destination == "https://after.example/new"
    assert rotated.params == {"campaign": "spring"}
    assert disabled.status == "disabled"
    assert enabled.status == "active"
    assert get_tracking_url(registry, link.tu_id).destination == "https://after.example/new"
    with pytest.raises(NotFound):
        disable_tracking_url(registry, "tu_" + uuid.uuid4().hex)
    with pytest.raises(NotFound):
        create_tracking_url(registry, new_prefix(), "https://x.example/")


def test_api_key_verify_and_revoke(registry):
    prefix = new_prefix()
    create_tenant(registry, key_prefix=prefix)
    created = create_api_key(registry, key_prefix=prefix, scope="write", name="ci")
    clear_cache()

    verified = verify_api_key(registry, created.raw_key)
    revoked = revoke_api_key(registry, created.api_key.key_id)
    clear_cache()

    assert verified.key_id == created.api_key.key_id
    assert verified.key_prefix == prefix
    assert revoked.revoked_at is not None
    with pytest.raises(Exception, match="revoked"):
        verify_api_key(registry, created.raw_key)


def test_ledger_insert_returning_lists_new_ids(registry):
    connection = registry.connection()
    first, second, third = (uuid.uuid4().hex for _ in range(3))
    now = int(time.time())

    inserted = connection.execute(_INSERT_IDS, (now, orjson.dumps([first, second]).decode()))
    again = connection.execute(_INSERT_IDS, (now, orjson.dumps([second, third]).decode()))

    assert sorted(row[0] for row in inserted) == sorted([first, second])
    assert again.fetchall() == [(third,)]
    assert again.rowcount == 1


def test_ledger_records_batch_once(registry):
    connection = registry.connection()
    prefix, consumer = new_prefix(), "stats-" + secrets.token_hex(4)
    hour = (int(time.time()) // HOUR) * HOUR
    ids = [uuid.uuid4().hex for _ in range(5)]
    rows = [(event_id, prefix, "click", "", hour) for event_id in ids]

    first = record_batch(
        connection, rows, consumer=consumer, topic="events", partition=0, last_offset=9
    )
    replay = record_batch(
        connection, rows, consumer=consumer, topic="events", partition=0, last_offset=9
    )
    overlap = record_batch(
        connection,
        [*rows[3:], (uuid.uuid4().hex, prefix, "click", "", hour)],
        consumer=consumer,
        topic="events",
        partition=0,
        last_offset=12,
    )

    assert first == 5
    assert replay == 0
    assert overlap == 1
    assert count_events(connection, prefix, start_hour=hour, end_hour=hour) == 6
    assert committed_offsets(connection, consumer, "events") == {0: 12}


def test_ledger_prune_counts_deleted_rows(registry):
    connection = registry.connection()
    ids = [uuid.uuid4().hex for _ in range(5)]
    connection.executemany(
        "INSERT INTO stats_ledger (event_id, recorded_at) VALUES (?, ?)", [(i, 1) for i in ids]
    )

    deleted = prune_ledger(connection, 2, batch_rows=2)

    assert deleted >= 5
    (left,) = connection.execute(
        "SELECT count(*) FROM stats_ledger WHERE event_id IN (?, ?, ?, ?, ?)", ids
    ).fetchone()
    assert left == 0


def test_errors_map_to_sqlite3_types(registry):
    connection = registry.connection()
    prefix = new_prefix()
    create_tenant(registry, key_prefix=prefix)

    with pytest.raises(sqlite3.IntegrityError, match="UNIQUE constraint failed"):
        connection.execute(
            "INSERT INTO tenants (key_prefix, name, plan, status, created_at, updated_at)"
            " VALUES (?, '', 'free', 'active', 0, 0)",
            [prefix],
        )
    with pytest.raises(sqlite3.OperationalError, match="syntax error"):
        connection.execute("SELEC 1")
    with pytest.raises(sqlite3.OperationalError, match="no such table"):
        connection.executescript("SELECT 1 FROM no_such_table;")
    with pytest.raises(sqlite3.ProgrammingError, match="named parameters"):
        connection.execute("SELECT :a", {"a": 1})
    with pytest.raises(sqlite3.ProgrammingError, match="unsupported type"):
        connection.execute("SELECT ?", (object(),))
    if isinstance(connection, LibsqlConnection):
        with pytest.raises(sqlite3.ProgrammingError, match="lose precision"):
            connection.execute("SELECT ?", (2**60,))
    else:
        assert connection.execute("SELECT ?, typeof(?)", (2**60, 2**60)).fetchone() == (
            2**60,
            "integer",
        )
        with pytest.raises(sqlite3.ProgrammingError, match="outside the 64-bit integer range"):
            connection.execute("SELECT ?", (2**64,))


def test_cursor_behaves_like_sqlite3(registry):
    connection = registry.connection()
    table = "probe_" + secrets.token_hex(4)
    connection.execute(f"CREATE TABLE {table} (id INTEGER PRIMARY KEY, n INTEGER, b BLOB)")
    try:
        inserted = connection.execute(
            f"INSERT INTO {table} (n, b) VALUES (?, ?)", (2**40, bytearray(b"\x00\x01"))
        )
        updated = connection.execute(f"UPDATE {table} SET n = n + 1")
        selected = connection.execute(f"SELECT n, typeof(n), b FROM {table}")
        before = connection.total_changes
        connection.executemany(f"INSERT INTO {table} (n) VALUES (?)", [(1,), [2]])

        assert inserted.rowcount == 1
        assert inserted.lastrowid == 1
        assert updated.rowcount == 1
        assert selected.rowcount == -1
        assert [column[0] for column in selected.description] == ["n", "typeof(n)", "b"]
        assert list(selected) == [(2**40 + 1, "integer", b"\x00\x01")]
        assert connection.total_changes - before == 2
        assert connection.in_transaction is False
    finally:
        connection.execute(f"DROP TABLE {table}")


def test_transaction_rolls_back_on_error(registry):
    prefix = new_prefix()
    with pytest.raises(RuntimeError, match="stop"), registry.transaction() as connection:
        connection.execute(
            "INSERT INTO tenants (key_prefix, name, plan, status, created_at, updated_at)"
            " VALUES (?, '', 'free', 'active', 0, 0)",
            (prefix,),
        )
        raise RuntimeError("stop")

    with pytest.raises(NotFound):
        get_tenant(registry, prefix)
    assert registry.connection().in_transaction is False


def test_threads_wait_for_each_other_write(registry):
    """A thread in BEGIN IMMEDIATE must not make another thread's write fail with 'locked'.

    libsql_experimental 0.0.55 holds the GIL while SQLite waits for a lock, so without the
    process-wide turn in LibsqlConnection the waiting thread blocks the holder until the
    busy timeout ends.
    """
    prefix = new_prefix()
    create_tenant(registry, key_prefix=prefix)
    started = threading.Event()
    errors: list[BaseException] = []

    def hold_transaction() -> None:
        try:
            with registry.transaction() as connection:
                connection.execute(
                    "UPDATE tenants SET name = 'held' WHERE key_prefix = ?", (prefix,)
                )
                started.set()
                time.sleep(0.3)
        except BaseException as error:  # reported by the assert below
            errors.append(error)
            started.set()

    holder = threading.Thread(target=hold_transaction)
    holder.start()
    started.wait(5)
    begin = time.monotonic()
    rotate_hmac_secret(registry, prefix)
    waited = time.monotonic() - begin
    holder.join(10)

    assert errors == []
    assert waited < 5, f"the second writer waited {waited:.1f} s"
    assert get_tenant(registry, prefix).name == "held"
    assert get_tenant(registry, prefix).hmac_key_ids == (0, 1)


def test_writer_waits_for_other_process(registry, registry_options):
    """A second process in BEGIN IMMEDIATE makes this process wait, not fail at once."""
    holder_code = (
        "import json, sys, time\n"
        "from tracker.registry.db import connect\n"
        "connection = connect(**json.loads(sys.argv[1]))\n"
        "connection.execute('BEGIN IMMEDIATE')\n"
        "connection.execute(\"UPDATE tenants SET name = name WHERE key_prefix = 'none'\")\n"
        "print('locked', flush=True)\n"
        "time.sleep(1.0)\n"
        "connection.execute('COMMIT')\n"
    )
    registry.connection()
    holder = subprocess.Popen(
        [sys.executable, "-c", holder_code, orjson.dumps(registry_options).decode()],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline().strip() == "locked"
        begin = time.monotonic()
        create_tenant(registry, key_prefix=new_prefix())
        waited = time.monotonic() - begin
    finally:
        holder_status = holder.wait(timeout=30)

    assert holder_status == 0
    # sqld aborts a transaction after 5 s by default, so the holder must finish well before.
    assert 0.3 < waited < 4, f"the write waited {waited:.2f} s"


def test_local_file_url_opens_libsql(tmp_path):
    pytest.importorskip("libsql_experimental", reason="needs the turso extra")
    registry = Registry(tmp_path / "ignored.db", turso_url=f"file:{tmp_path / 'libsql.db'}")
    try:
        connection = registry.connection()
        create_tenant(registry, key_prefix="fileurl")
        (journal_mode,) = connection.execute("PRAGMA journal_mode").fetchone()
        (foreign_keys,) = connection.execute("PRAGMA foreign_keys").fetchone()
        (busy_timeout,) = connection.execute("PRAGMA busy_timeout").fetchone()
    finally:
        registry.close()

    assert isinstance(connection, LibsqlConnection)
    assert journal_mode == "wal"
    assert foreign_keys == 1
    assert busy_timeout == 10_000
    assert (tmp_path / "libsql.db").exists()
    assert not (tmp_path / "ignored.db").exists()


def test_unknown_turso_scheme_rejected(tmp_path):
    with pytest.raises(RegistryError, match="invalid TURSO_URL 'ftp://"):
        connect(tmp_path / "x.db", turso_url="ftp://127.0.0.1/db")
    with pytest.raises(RegistryError, match="unknown registry engine 'duckdb'"):
        connect(tmp_path / "x.db", engine="duckdb")


@needs_sqld
def test_serve_follows_sqld_changes(tmp_path: Path):
    """`tracker serve` on TURSO_URL picks up a new tenant and a rotated link within one refresh."""
    refresh_seconds = 5.0  # the REGISTRY_REFRESH_SECONDS default
    registry = Registry(
        tmp_path / "unused.db", turso_url=TURSO_TEST_URL, turso_token=TURSO_TEST_AUTH_TOKEN
    )
    port = free_port()
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    env = server_env(data_dir, port, TURSO_URL=TURSO_TEST_URL or "")
    env.pop("REGISTRY_REFRESH_SECONDS")
    if TURSO_TEST_AUTH_TOKEN:
        env["TURSO_AUTH_TOKEN"] = TURSO_TEST_AUTH_TOKEN
    log_path = data_dir / "serve.log"
    process = start_server(env, log_path)
    try:
        wait_healthy("127.0.0.1", port, process, log_path)
        prefix = new_prefix()
        unknown = _get(port, f"/p?key_prefix={prefix}&x=1")

        create_tenant(registry, key_prefix=prefix)
        link = create_tracking_url(registry, prefix, "https://before.example/")
        tenant_seen = _seconds_until(
            lambda: _get(port, f"/p?key_prefix={prefix}&x=1")[0] == 200, refresh_seconds + 3
        )
        rotate_destination(registry, link.tu_id, "https://after.example/new")
        rotation_seen = _seconds_until(
            lambda: _get(port, f"/t/{link.tu_id}")[1].startswith("https://after.example/new?"),
            refresh_seconds + 3,
        )
    finally:
        stop_server(process)
        registry.close()

    assert unknown[0] != 200
    # One refresh interval plus the time of the refresh itself and of the polling.
    assert tenant_seen <= refresh_seconds + 1.5, log_path.read_text()[-2000:]
    assert rotation_seen <= refresh_seconds + 1.5, log_path.read_text()[-2000:]


def _get(port: int, target: str) -> tuple[int, str]:
    import http.client

    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        connection.request("GET", target)
        response = connection.getresponse()
        response.read()
        return response.status, response.getheader("location") or ""
    finally:
        connection.close()


def _seconds_until(condition, timeout: float) -> float:
    start = time.monotonic()
    while not condition():
        elapsed = time.monotonic() - start
        if elapsed > timeout:
            raise TimeoutError(f"condition not met within {timeout} s")
        time.sleep(0.1)
    return time.monotonic() - start
