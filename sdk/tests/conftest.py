"""Fixtures for the SDK tests: a scripted local HTTP server and the shared vector directory.

The scripted server takes the place of the ingest service and the platform API. It listens
on 127.0.0.1, records every request and responds from a script of statuses and bodies. Tests
that need the real platform live in the repository's tests/sdk_integration.

The shared byte-format vectors are read from the repository (`../tests/vectors` next to
this package), so these tests run from a checkout of tracker-platform.
"""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
VECTORS = REPO_ROOT / "tests" / "vectors"


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@dataclass
class Reply:
    """One scripted response: status, JSON body (None for an empty body) and headers."""

    status: int = 200
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class Request:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


class ScriptedServer:
    """Threaded HTTP server on 127.0.0.1 that responds from `script`, then with `default`.

    `default` is called with the request and returns a Reply; for `/batch` the built-in
    default accepts every event. `gate`, when cleared, delays every response until it is set.
    """

    def __init__(self) -> None:
        self.requests: list[Request] = []
        self.script: list[Reply] = []
        self.default: Callable[[Request], Reply] = _accept_all
        self.gate = threading.Event()
        self.gate.set()
        self._lock = threading.Lock()
        self._arrived = threading.Condition(self._lock)
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                self._handle()

            def do_POST(self) -> None:
                self._handle()

            def do_PATCH(self) -> None:
                self._handle()

            def do_DELETE(self) -> None:
                self._handle()

            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                request = Request(
                    self.command,
                    self.path,
                    {k.lower(): v for k, v in self.headers.items()},
                    self.rfile.read(length),
                )
                reply = server._next_reply(request)
                server.gate.wait(30)
                payload = b"" if reply.body is None else json.dumps(reply.body).encode()
                self.send_response(reply.status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                for name, value in reply.headers.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, format: str, *args: object) -> None:
                pass

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._httpd.server_address[1]}"
        self._thread = threading.Thread(target=self._httpd.serve_forever, args=(0.05,), daemon=True)
        self._thread.start()

    def _next_reply(self, request: Request) -> Reply:
        with self._lock:
            self.requests.append(request)
            reply = self.script.pop(0) if self.script else None
            self._arrived.notify_all()
        return reply if reply is not None else self.default(request)

    def wait_for_requests(self, count: int, timeout: float = 10.0) -> list[Request]:
        """Block until at least `count` requests arrived; return all of them."""
        with self._lock:
            if not self._arrived.wait_for(lambda: len(self.requests) >= count, timeout):
                raise AssertionError(f"expected {count} requests, got {len(self.requests)}")
            return list(self.requests)

    def batch_event_lists(self) -> list[list[dict[str, Any]]]:
        with self._lock:
            return [r.json()["events"] for r in self.requests if r.path == "/batch"]

    def close(self) -> None:
        self.gate.set()
        self._httpd.shutdown()
        self._httpd.server_close()


def _accept_all(request: Request) -> Reply:
    if request.path == "/batch":
        events = request.json()["events"]
        return Reply(200, {"accepted": len(events), "rejected": []})
    return Reply(404, {"error": {"code": "not_found", "message": "no such route"}})


@pytest.fixture
def server() -> Iterator[ScriptedServer]:
    scripted = ScriptedServer()
    yield scripted
    scripted.close()


class RecordingSleep:
    """Stands in for time.sleep in retry tests: records each delay and returns at once."""

    def __init__(self) -> None:
        self.delays: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)


@pytest.fixture
def sleep() -> RecordingSleep:
    return RecordingSleep()
