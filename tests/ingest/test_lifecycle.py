"""Start-up failures, SIGTERM draining, kill -9 under load and a broker outage."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.conftest import free_port
from tests.ingest.conftest import (
    SERVE_COMMAND,
    fire_postbacks,
    launch,
    read_local_log,
    server_env,
    start_server,
    stop_server,
)


def run_serve(env: dict[str, str], timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        SERVE_COMMAND,
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=env["TRACKER_DATA_DIR"],
    )


def test_port_in_use_exits_without_prompt(data_dir: Path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]

        result = run_serve(server_env(data_dir, port))

    assert result.returncode == 1
    assert f"port {port} on 127.0.0.1 is already in use" in result.stderr
    assert "Enter a different port" not in result.stdout + result.stderr


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("PORT", "eighty"),
        ("URL_MODE", "plain"),
        ("ENCRYPTION_KEY", "abcd"),
        ("ENCRYPTION_KEYS", "1:zz"),
        ("TRUSTED_PROXIES", "10.0.0.0/99"),
        ("MAX_BATCH_SIZE", "0"),
    ],
)
def test_bad_setting_exits_2_naming_variable(data_dir: Path, variable, value):
    env = server_env(data_dir, free_port(), **{variable: value})

    result = run_serve(env)

    assert result.returncode == 2
    assert variable in result.stderr
    assert "Traceback" not in result.stderr


def test_sigterm_drains_and_exits_0(tmp_path: Path):
    server = launch(tmp_path / "data")
    stop = threading.Event()
    accepted: list[str] = []
    failures: list[str] = []
    with ThreadPoolExecutor(max_workers=8) as pool:
        for _ in range(8):
            pool.submit(fire_postbacks, server, stop, accepted, failures)
        time.sleep(1.0)
        server.process.send_signal(signal.SIGTERM)
        exit_code = server.process.wait(timeout=30)
        stop.set()

    stored = read_local_log(server.data_dir)
    assert exit_code == 0
    assert len(accepted) > 50
    assert [event_id for event_id in accepted if event_id not in stored] == []
    server.registry.close()


def _send_malformed_chunked_body(server) -> None:
    """Send a POST whose chunk size is not hex, which makes Robyn 0.88 abort its process."""
    with socket.create_connection((server.host, server.port), timeout=5) as connection:
        connection.sendall(
            b"POST /batch HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Transfer-Encoding: chunked\r\n\r\nzz\r\n"
        )
        # The process dies with the connection open, which may reset it.
        with contextlib.suppress(OSError):
            connection.recv(1024)


def test_crashed_process_is_restarted(tmp_path: Path):
    server = launch(tmp_path / "data")
    children_before = subprocess.run(
        ["pgrep", "-P", str(server.process.pid)], capture_output=True, text=True
    ).stdout.split()

    _send_malformed_chunked_body(server)
    deadline = time.monotonic() + 20
    reply = None
    while time.monotonic() < deadline and server.process.poll() is None:
        try:
            reply = server.get("/p?key_prefix=acme&after=crash", timeout=2)
            if reply.status == 200:
                break
        except OSError:
            time.sleep(0.2)
    children_after = subprocess.run(
        ["pgrep", "-P", str(server.process.pid)], capture_output=True, text=True
    ).stdout.split()
    exit_code = stop_server(server.process)

    log = (server.data_dir / "serve.log").read_text()
    assert reply is not None
    assert reply.status == 200
    assert children_before != children_after
    assert "restarting it" in log
    assert "failed to start" not in log
    assert exit_code == 0
    assert reply.json()["event_id"] in read_local_log(server.data_dir)
    server.registry.close()


def test_stop_before_ready_exits_0(tmp_path: Path):
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    log_path = data_dir / "serve.log"
    process = start_server(server_env(data_dir, free_port()), log_path)
    deadline = time.monotonic() + 20
    while "Ingest service started." not in log_path.read_text() and time.monotonic() < deadline:
        time.sleep(0.01)
    # The launcher has spawned its server process, which is still importing.
    assert "Ingest server starting." not in log_path.read_text()

    process.send_signal(signal.SIGTERM)

    assert process.wait(timeout=30) == 0


@pytest.mark.slow
def test_kill_9_under_load_loses_no_accepted_event(tmp_path: Path):
    server = launch(tmp_path / "data", INGEST_PROCESSES="2")
    stop = threading.Event()
    accepted: list[str] = []
    failures: list[str] = []
    launcher_group = os.getpgid(server.process.pid)
    children = subprocess.run(
        ["pgrep", "-P", str(server.process.pid)], capture_output=True, text=True
    ).stdout.split()

    with ThreadPoolExecutor(max_workers=16) as pool:
        for _ in range(16):
            pool.submit(fire_postbacks, server, stop, accepted, failures)
        deadline = time.monotonic() + 20
        while len(accepted) < 3000 and time.monotonic() < deadline:
            time.sleep(0.05)
        # Kill the launcher and every server process at once: nothing gets to drain.
        for pid in [server.process.pid, *map(int, children)]:
            os.kill(pid, signal.SIGKILL)
        time.sleep(0.5)
        stop.set()
    server.process.wait(timeout=10)

    stored = read_local_log(server.data_dir)
    assert launcher_group > 0
    assert len(accepted) >= 1000
    assert [event_id for event_id in accepted if event_id not in stored] == []
    server.registry.close()


def test_broker_down_spools_and_reports_503(tmp_path: Path):
    unreachable = free_port()  # nothing listens here, so every connect is refused
    server = launch(
        tmp_path / "data",
        BROKER="iggy",
        IGGY_URL=f"127.0.0.1:{unreachable}",
        IGGY_TIMEOUT_SECONDS="0.5",
        BROKER_RECONNECT_SECONDS="60",
    )
    try:
        replies = [server.get(f"/p?key_prefix=acme&n={index}") for index in range(20)]
        broker_health = server.get("/health/broker")
        health = server.get("/health").json()
    finally:
        exit_code = stop_server(server.process)
        server.registry.close()

    assert [reply.status for reply in replies] == [200] * 20
    assert broker_health.status == 503
    assert broker_health.json()["state"] == "spooling"
    assert health["broker"] == {"backend": "iggy", "state": "spooling"}
    assert health["spool_events"] >= 1
    assert exit_code == 0


def test_full_producer_queue_returns_503(tmp_path: Path):
    server = launch(tmp_path / "data", PRODUCER_QUEUE_EVENTS="1")
    body = b'[{"event_type":"a","params":{"key_prefix":"acme"}},{"event_type":"b","params":{"key_prefix":"acme"}}]'
    try:
        full = server.post("/batch", body)
        single = server.get("/p?key_prefix=acme")
    finally:
        stop_server(server.process)
        server.registry.close()

    assert full.status == 503
    assert full.json()["error"]["code"] == "queue_full"
    assert full.headers["retry-after"] == "1"
    assert single.status == 200


def test_unusable_registry_exits_with_message(data_dir: Path):
    (data_dir / "not-a-dir").write_text("a file where a directory should be")
    env = server_env(
        data_dir, free_port(), REGISTRY_PATH=str(data_dir / "not-a-dir" / "registry.db")
    )

    result = run_serve(env)

    assert result.returncode == 1
    assert "cannot open the registry at" in result.stderr
    assert "REGISTRY_PATH" in result.stderr
    assert "Traceback" not in result.stderr
