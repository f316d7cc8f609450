"""A Robyn app for test_threadstate.py: GET /probe reports whether its worker thread kept state.

Run as `python threadstate_probe.py PORT keep|plain`. The route's handler is a
plain function, so it runs on Robyn's worker thread, where it reads and sets a
`threading.local` value before returning the coroutine Robyn awaits. The value
survives between requests only while the thread's Python thread state does.
"""

from __future__ import annotations

import sys
import threading

from robyn import Config, Request, Response, Robyn
from robyn.robyn import FunctionInfo

from tracker.ingest.threadstate import keeping_thread_state

_local = threading.local()


async def _respond(body: str) -> Response:
    return Response(200, {"Content-Type": "text/plain"}, body)


def probe(request: Request):
    seen = getattr(_local, "seen", False)
    _local.seen = True
    return _respond(f"{threading.get_ident()} {'kept' if seen else 'new'}")


async def _placeholder(request: Request) -> Response:
    return Response(500, {}, b"")


def main() -> None:
    port, mode = int(sys.argv[1]), sys.argv[2]
    config = Config()
    config.processes = 1
    config.workers = 1
    config.log_level = "WARN"
    config.disable_openapi = True
    app = Robyn(__file__, config=config)
    app.add_route("GET", "/probe", _placeholder)
    # The same replacement as tracker.ingest.app makes for its guards.
    handler = keeping_thread_state(probe) if mode == "keep" else probe
    routes = app.router.routes
    routes[0] = routes[0]._replace(function=FunctionInfo(handler, True, 1, {}, {}))
    app.start(host="127.0.0.1", port=port, _check_port=False)


if __name__ == "__main__":
    main()
