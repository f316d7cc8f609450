"""An empty Robyn handler on PORT, started like one `tracker serve` process: the load baseline.

It returns a constant JSON body for every GET /p, and for every POST /batch
whatever the body, from a plain async handler (not a `const=True` route). So
the ratio against it measures what the ingest handler adds on top of Robyn
itself, and the /batch route shows the memory Robyn alone needs for the same
bodies at the same concurrency. GET /t returns a constant 307 redirect, so a
signed click URL can be sent to it unchanged, because Robyn's own work grows
with the length of the query string and the response headers.
"""

from __future__ import annotations

import os
import sys

from robyn import Config, Request, Response, Robyn


def main() -> None:
    config = Config()
    config.processes = 1
    config.workers = int(os.environ.get("INGEST_WORKERS", "1"))
    config.log_level = "WARN"
    config.disable_openapi = True
    app = Robyn(__file__, config=config)
    body = b'{"event_id":"00000000-0000-7000-8000-000000000000"}'
    headers = {"Content-Type": "application/json"}

    async def empty(request: Request) -> Response:
        return Response(200, headers, body)

    location = "https://shop.example/landing?campaign=spring&ad_click_id=" + "0" * 36
    redirect_headers = {"Location": location, "Cache-Control": "no-store"}

    async def redirect(request: Request) -> Response:
        return Response(307, redirect_headers, b"")

    app.add_route("GET", "/p", empty)
    app.add_route("GET", "/t", redirect)
    app.add_route("POST", "/batch", empty)
    app.start(host="127.0.0.1", port=int(sys.argv[1]), _check_port=False)


if __name__ == "__main__":
    main()
