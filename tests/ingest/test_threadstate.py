"""Keeping the Python thread state of Robyn's worker threads between requests."""

from __future__ import annotations

import http.client
import subprocess
import sys
import threading
import time
from pathlib import Path

from tests.conftest import free_port
from tracker.ingest.threadstate import keep_thread_state, keeping_thread_state

PROBE = Path(__file__).with_name("threadstate_probe.py")


def _probe_answers(mode: str, requests: int) -> list[str]:
    """Start the probe app in `mode` and return the bodies of `requests` GET /probe."""
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, str(PROBE), str(port), mode],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        answers: list[str] = []
        deadline = time.monotonic() + 30
        while len(answers) < requests:
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            try:
                connection.request("GET", "/probe")
                response = connection.getresponse()
                assert response.status == 200
                answers.append(response.read().decode())
            except ConnectionRefusedError:
                if time.monotonic() > deadline or process.poll() is not None:
                    raise
                time.sleep(0.1)
            finally:
                connection.close()
        return answers
    finally:
        # Robyn 0.88 does not always stop on SIGTERM, and the probe has nothing to drain.
        process.kill()
        process.wait(10)


def test_kept_state_survives_requests():
    answers = _probe_answers("keep", 6)

    threads = {answer.split()[0] for answer in answers}
    assert len(threads) == 1, answers
    assert [answer.split()[1] for answer in answers] == ["new"] + ["kept"] * 5


def test_state_lost_without_keeping():
    # The probe distinguishes the two cases, because Robyn's own entry drops the state each time.
    answers = _probe_answers("plain", 4)

    assert [answer.split()[1] for answer in answers] == ["new"] * 4


def test_keep_twice_is_harmless():
    results: list[bool] = []

    def run() -> None:
        results.extend([keep_thread_state(), keep_thread_state()])

    thread = threading.Thread(target=run)
    thread.start()
    thread.join()

    assert results == [True, True]


def test_wrapper_passes_values_through():
    def double(value: int) -> int:
        return value * 2

    wrapped = keeping_thread_state(double)

    assert wrapped(21) == 42
    assert wrapped.__wrapped__ is double
