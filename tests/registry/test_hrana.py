"""The remote libSQL client against loopback servers that misbehave.

The round-trips against a real sqld are in test_libsql.py. These cases need no sqld: a
socket that accepts connections and never responds plays a hung server, and a
small HTTP server for one that rejects the token.
"""

from __future__ import annotations

import socket
import sqlite3
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from tracker.registry.hrana import HranaConnection


@pytest.fixture
def silent_server() -> Iterator[str]:
    """URL of a loopback socket that accepts connections and never sends a byte."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        listener.settimeout(0.1)
        while not stop.is_set():
            try:
                accepted.append(listener.accept()[0])
            except TimeoutError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    stop.set()
    thread.join(5)
    for connection in accepted:
        connection.close()
    listener.close()


class _RejectingHandler(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        body = b'{"error":"Unauthorized: The JWT is invalid"}'
        self.send_response(401)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


def test_hung_server_times_out_without_freezing(silent_server):
    connection = HranaConnection(silent_server, timeout_seconds=1.0)
    ticks: list[float] = []
    stop = threading.Event()

    def tick() -> None:
        while not stop.is_set():
            ticks.append(time.monotonic())
            time.sleep(0.05)

    ticker = threading.Thread(target=tick, daemon=True)
    ticker.start()
    begin = time.monotonic()
    try:
        with pytest.raises(sqlite3.OperationalError, match="timed out"):
            connection.execute("SELECT 1")
        elapsed = time.monotonic() - begin
        rollback = connection.execute("ROLLBACK")
    finally:
        stop.set()
        ticker.join(5)
        connection.close()

    ticks_during_wait = [stamp for stamp in ticks if begin < stamp < begin + elapsed]
    assert 0.9 < elapsed < 5, f"the request failed after {elapsed:.2f} s"
    # The ticker runs every 50 ms; with the GIL held during the wait it would not run at all.
    assert len(ticks_during_wait) >= 5, f"{len(ticks_during_wait)} ticks in {elapsed:.2f} s"
    assert connection.in_transaction is False
    assert rollback.rowcount == -1


def test_rejected_token_raises_operational_error():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _RejectingHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        connection = HranaConnection(
            f"http://127.0.0.1:{server.server_address[1]}", auth_token="bad", timeout_seconds=5
        )
        with pytest.raises(sqlite3.OperationalError, match=r"HTTP 401.*JWT is invalid"):
            connection.execute("SELECT 1")
        connection.close()
    finally:
        server.shutdown()
        server.server_close()


def test_refused_connection_fails_fast():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    connection = HranaConnection(f"http://127.0.0.1:{closed_port}", timeout_seconds=5)
    begin = time.monotonic()

    with pytest.raises(sqlite3.OperationalError, match=rf"127\.0\.0\.1:{closed_port} failed"):
        connection.execute("SELECT 1")

    assert time.monotonic() - begin < 2
    connection.close()


def test_invalid_url_rejected():
    with pytest.raises(ValueError, match="invalid libSQL URL 'ftp://x'"):
        HranaConnection("ftp://x")
