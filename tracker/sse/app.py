"""The SSE gateway's Robyn server: `GET /events/stream` and `GET /health`.

A stream is authenticated by a tenant API key of any scope, sent as
`Authorization: Bearer <key>` or, for the browser's `EventSource` (which cannot
set headers), as `?key=<key>`. A key in the URL can end up in proxy and server
access logs and in browser history, so give browsers a read-scoped key only.
An admin key (ADMIN_API_KEY) must name the tenant with `?key_prefix=`.

Filters: `event_type`, `param_key` (the event must have that param) and
`param_value` (with `param_key`: the param must equal it). Each event is sent as
`id: <partition>-<offset>-<index>` and `data: <event JSON>`; a reconnecting
client's `Last-Event-ID` (or `?last_event_id=`) replays what it missed from the
broker, within the broker's retention and `SSE_REPLAY_MAX_EVENTS`. Comment
lines keep idle connections open every `SSE_HEARTBEAT_SECONDS`. A client that
falls `SSE_CLIENT_BUFFER` events behind gets `event: overflow` and is
disconnected; it may reconnect with its last id. Robyn reports no disconnects,
so a closed stream is noticed at its next write and counts against
`SSE_MAX_CONNECTIONS_PER_TENANT` until then (at most one heartbeat). Pages on other origins may
read streams when `SSE_ALLOWED_ORIGINS` (comma-separated) lists their origin.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import AsyncIterator
from typing import Any

import orjson
from robyn import Headers, Response, Robyn, SSEResponse

from tracker.broker.base import Broker
from tracker.errors import AuthenticationError
from tracker.registry.api_keys import verify_api_key
from tracker.sse.hub import EventFilter, Hub, Subscription, TooManyConnections
from tracker.sse.settings import SseSettings
from tracker.sse.tailer import BrokerTailer, parse_last_event_id
from tracker.unmatched import add_unmatched_routes

__all__ = ["SseGateway"]

logger = logging.getLogger(__name__)

MAX_FILTER_LENGTH = 2048
# Messages sent in one write when the client has fallen behind.
MAX_MESSAGES_PER_CHUNK = 256


def _error(status: int, code: str, message: str, field: str | None = None) -> Response:
    body: dict[str, Any] = {"error": {"code": code, "message": message}}
    if field is not None:
        body["error"]["field"] = field
    return Response(
        status_code=status,
        headers=Headers({"Content-Type": "application/json"}),
        description=orjson.dumps(body).decode(),
    )


class _BadRequest(Exception):
    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


def _query(request: Any, name: str) -> str | None:
    value = request.query_params.get(name, None)
    if value is None or value == "":
        return None
    if len(value) > MAX_FILTER_LENGTH:
        raise _BadRequest(
            name, f"{name} is {len(value)} characters long, the maximum is {MAX_FILTER_LENGTH}"
        )
    return value


class SseGateway:
    """The hub, the broker tailer and the Robyn routes that stream from them."""

    def __init__(
        self, settings: SseSettings, broker: Broker, registry: Any, *, admin_key: str | None = None
    ) -> None:
        self.settings = settings
        self.broker = broker
        self.registry = registry
        self.admin_key = admin_key
        self.hub = Hub(
            client_buffer=settings.client_buffer,
            max_connections_per_tenant=settings.max_connections_per_tenant,
            grace_seconds=settings.slow_client_grace_seconds,
        )
        self.tailer = BrokerTailer(
            broker,
            self.hub,
            poll_seconds=settings.poll_seconds,
            read_messages=settings.read_messages,
        )
        self._tailer_task: asyncio.Task[None] | None = None

    def build_app(self) -> Robyn:
        app = Robyn(__file__)
        app.startup_handler(self._startup)
        app.shutdown_handler(self._shutdown)
        app.get("/health")(self._health)
        app.get("/events/stream")(self._stream)
        add_unmatched_routes(app, [("GET", "/health"), ("GET", "/events/stream")])
        return app

    async def _startup(self) -> None:
        await self.broker.connect()
        await self.tailer.start_at_end()
        self._tailer_task = asyncio.create_task(self.tailer.run(), name="sse-tailer")
        logger.info(
            "SSE gateway started.",
            extra={"port": self.settings.port, "partitions": self.broker.partitions},
        )

    async def _shutdown(self) -> None:
        if self._tailer_task is not None:
            self._tailer_task.cancel()
        await self.broker.close()
        logger.info("SSE gateway stopped.")

    async def _health(self, request: Any) -> Response:
        body = {
            "status": "ok"
            if self._tailer_task is not None and not self._tailer_task.done()
            else "starting",
            "connections": self.hub.connection_count(),
            "overflows": self.hub.overflows,
            "pid": os.getpid(),
        }
        return Response(
            status_code=200,
            headers=Headers({"Content-Type": "application/json"}),
            description=orjson.dumps(body).decode(),
        )

    async def _authenticate(self, request: Any) -> str:
        header = request.headers.get("authorization") or ""
        raw_key = (
            header[7:].strip()
            if header[:7].lower() == "bearer "
            else request.query_params.get("key", "")
        )
        api_key = await asyncio.to_thread(
            verify_api_key, self.registry, raw_key or "", admin_key=self.admin_key
        )
        if api_key.key_prefix is not None:
            return api_key.key_prefix
        tenant = _query(request, "key_prefix")
        if tenant is None:
            raise _BadRequest(
                "key_prefix", "an admin key must name the tenant to stream with ?key_prefix="
            )
        return tenant

    async def _stream(self, request: Any) -> Any:
        try:
            tenant = await self._authenticate(request)
            event_type = _query(request, "event_type")
            param_key = _query(request, "param_key")
            param_value = _query(request, "param_value")
            if param_value is not None and param_key is None:
                raise _BadRequest(
                    "param_value", "param_value needs param_key: name the param to compare"
                )
            last_event_id = request.headers.get("last-event-id") or _query(request, "last_event_id")
            resume = parse_last_event_id(last_event_id, self.broker.partitions)
            if last_event_id and resume is None:
                raise _BadRequest(
                    "last_event_id", "Last-Event-ID must read <partition>-<offset>-<index>"
                )
        except AuthenticationError as error:
            return _error(401, f"api_key_{error.reason}", str(error), "key")
        except _BadRequest as error:
            return _error(400, "invalid_parameter", str(error), error.field)

        event_filter = EventFilter(event_type, param_key, param_value)
        try:
            subscription = self.hub.subscribe(tenant, event_filter)
        except TooManyConnections:
            limit = self.settings.max_connections_per_tenant
            return _error(
                429,
                "too_many_connections",
                f"this tenant already has {limit} open streams, the maximum",
            )
        logger.debug("SSE client connected.", extra={"key_prefix": tenant})
        headers = Headers({"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
        origin = request.headers.get("origin")
        if origin and origin.rstrip("/") in self.settings.allowed_origins:
            headers.set("Access-Control-Allow-Origin", origin)
            headers.set("Vary", "Origin")
        return SSEResponse(self._messages(subscription, resume), headers=headers)

    async def _messages(
        self, subscription: Subscription, resume: tuple[int, int, int] | None
    ) -> AsyncIterator[str]:
        try:
            yield f"retry: {self.settings.retry_ms}\n: connected\n\n"
            if resume is not None:
                until = subscription.start_positions.get(resume[0], 0)
                replayed = await self.tailer.replay(
                    subscription.tenant,
                    subscription.filter,
                    resume,
                    until,
                    self.settings.replay_max_events,
                )
                for start in range(0, len(replayed), MAX_MESSAGES_PER_CHUNK):
                    yield "".join(replayed[start : start + MAX_MESSAGES_PER_CHUNK])
            queue = subscription.queue
            while True:
                try:
                    first = await asyncio.wait_for(queue.get(), self.settings.heartbeat_seconds)
                except TimeoutError:
                    yield ": heartbeat\n\n"
                    continue
                if subscription.overflowed:
                    yield 'event: overflow\ndata: {"reason":"client_too_slow"}\n\n'
                    return
                chunk = [first]
                while not queue.empty() and len(chunk) < MAX_MESSAGES_PER_CHUNK:
                    chunk.append(queue.get_nowait())
                yield "".join(chunk)
        finally:
            self.hub.unsubscribe(subscription)
            logger.debug("SSE client disconnected.", extra={"key_prefix": subscription.tenant})
