"""Endpoint logic of the ingestion service: each request becomes a durable event or an error.

Every accepting handler returns 2xx only after the producer reported the event
durable (committed to the local log, acknowledged by the remote broker, or
committed to the spool while the broker is unreachable). A crash after the
response therefore loses nothing the client saw accepted.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import orjson
from robyn import Headers, Request, Response

from tracker import __version__
from tracker._core import (
    BatchParser,
    EventLimits,
    ParsedBatch,
    build_event,
    partition_for,
    split_signature,
    verify_click,
)
from tracker.errors import (
    AuthenticationError,
    BatchError,
    BrokerError,
    EventError,
    QueueFull,
    SignatureError,
    SignatureExpired,
)
from tracker.ingest.beacon import BEACON_CONTENT_TYPES, BeaconScript, parse_beacon
from tracker.ingest.cache import RegistryCache
from tracker.ingest.clicks import require_tenant, resolve_click
from tracker.ingest.destinations import (
    InvalidDestination,
    parse_destination_cached,
    redirect_location,
)
from tracker.ingest.errors import IngestError
from tracker.ingest.metrics import IngestMetrics, render_metrics
from tracker.ingest.requests import Query, RequestLimits, client_ip, peer_address, read_query
from tracker.ingest.settings import IngestSettings

__all__ = ["TRANSPARENT_GIF", "IngestService"]

# The smallest transparent 1x1 GIF89a: 43 bytes.
TRANSPARENT_GIF = (
    b"GIF89a\x01\x00\x01\x00\x80\x00\x00\x00\x00\x00\xff\xff\xff!\xf9\x04\x01\x00\x00\x00\x00"
    b",\x00\x00\x00\x00\x01\x00\x01\x00\x00\x02\x02D\x01\x00;"
)
GIF_HEADERS = {
    "Content-Type": "image/gif",
    "Cache-Control": "no-store, no-cache, must-revalidate",
    "Pragma": "no-cache",
    "Expires": "0",
}
BEACON_CORS_HEADERS = {"Access-Control-Allow-Origin": "*"}
PREFLIGHT_HEADERS = {
    "Access-Control-Allow-Origin": "*",
    "Access-Control-Allow-Methods": "POST",
    "Access-Control-Allow-Headers": "Content-Type",
    "Access-Control-Max-Age": "86400",
}
SCRIPT_CACHE_CONTROL = "public, max-age=86400, immutable"
JSON_HEADERS = {"Content-Type": "application/json", "Cache-Control": "no-store"}
# Robyn shares a Headers object passed to Response instead of building one from a dict per
# response, and copies it before sending, so these may serve every response.
_GIF_RESPONSE_HEADERS = Headers(GIF_HEADERS)
_JSON_RESPONSE_HEADERS = Headers(JSON_HEADERS)

# Bodies from this size on are parsed on a pool thread. A smaller body parses in about as
# long as the hop between threads takes (an estimate: tens of microseconds each).
PARSE_IN_POOL_BYTES = 64 * 1024

# Query parameters of /p and /i that carry the optional signature, not event data.
_SIGNATURE_PARAMS = frozenset({"sig", "exp", "sp"})
_INGEST_HEADER_FIELDS = ("ip", "user_agent", "referer", "accept_language")


class IngestService:
    """State shared by the handlers of one server process, and the handlers themselves."""

    def __init__(
        self,
        settings: IngestSettings,
        cache: RegistryCache,
        producer: Any,
        registry: Any,
        metrics: IngestMetrics,
        script: BeaconScript | None,
    ) -> None:
        self.settings = settings
        self.cache = cache
        self.producer = producer
        self.registry = registry
        self.metrics = metrics
        self.script = script
        self.partitions = settings.broker.partitions
        self.limits = RequestLimits(
            max_url_bytes=settings.max_url_bytes,
            max_header_bytes=settings.max_header_bytes,
            max_params=settings.max_params,
            max_param_key_len=settings.max_param_key_len,
            max_param_value_len=settings.max_param_value_len,
        )
        # Room for the params the server adds itself (key_prefix, tu_id) and a link's fixed ones.
        self.event_limits = EventLimits(
            max_params=settings.max_params + 16,
            max_key_len=settings.max_param_key_len,
            max_value_len=settings.max_param_value_len,
        )
        self.max_field_len = self.event_limits.max_field_len
        self.in_flight = 0
        self.draining = False
        self._batch_parser: BatchParser | None = None
        self._batch_parser_version = -1
        # The parser releases the GIL, so pool threads parse large bodies on other cores
        # while the event loop thread goes on serving requests.
        self._parse_pool = (
            ThreadPoolExecutor(settings.batch_parse_threads, thread_name_prefix="batch-parse")
            if settings.batch_parse_threads > 0
            else None
        )

    # Click endpoints.

    async def click(self, request: Request) -> Response:
        query = self._query(request, "/t")
        click = resolve_click(query, self.settings, self.cache, int(time.time()))
        event_id = await self._emit("click", click.key_prefix, click.params, request, "/t")
        return _redirect(redirect_location(click.destination, event_id))

    async def short_link(self, request: Request) -> Response:
        tu_id = request.path_params.get("tu_id") or ""
        link = self.cache.links.get(tu_id)
        if link is None:
            raise IngestError(
                "tracking_url_not_found", f"tracking URL {tu_id[:60]!r} does not exist", "tu_id"
            )
        if not link.active:
            raise IngestError(
                "tracking_url_disabled", f"tracking URL {tu_id[:60]!r} is disabled", "tu_id"
            )
        require_tenant(self.cache, link.key_prefix)
        query = self._query(request, "/t/" + tu_id)
        try:
            destination = parse_destination_cached(link.destination)
        except InvalidDestination as error:
            raise IngestError("invalid_destination", str(error), "tu_id") from None

        params = list(link.params.items())
        params.extend(query.pairs())
        params.append(("tu_id", tu_id))
        params.append(("key_prefix", link.key_prefix))
        event_id = await self._emit(
            "click", link.key_prefix, params, request, "/t/" + tu_id, endpoint="/t/:tu_id"
        )
        return _redirect(redirect_location(destination, event_id))

    # Server-to-server and pixel endpoints.

    async def postback(self, request: Request) -> Response:
        key_prefix, params = self._tenant_query(request, "/p")
        event_id = await self._emit("postback", key_prefix, params, request, "/p")
        return Response(200, _JSON_RESPONSE_HEADERS, orjson.dumps({"event_id": event_id}))

    async def impression(self, request: Request) -> Response:
        key_prefix, params = self._tenant_query(request, "/i")
        await self._emit("impression", key_prefix, params, request, "/i")
        return Response(200, _GIF_RESPONSE_HEADERS, TRANSPARENT_GIF)

    async def batch(self, request: Request) -> Response:
        # Parsing in a separate call leaves no reference to the body in this frame,
        # so the body is freed while the handler waits for the events to be durable.
        parse = self._prepare_batch_parse(request)
        if self._parse_pool is not None and parse.size >= PARSE_IN_POOL_BYTES:
            loop = asyncio.get_running_loop()
            parsed = await loop.run_in_executor(self._parse_pool, parse.run)
        else:
            parsed = parse.run()
        del parse
        if parsed.records:
            await self._submit(self.producer.send_records(parsed.records))
            self.metrics.count_accepted("/batch", parsed.accepted)
        if parsed.rejected:
            self.metrics.count_rejected("batch_event", len(parsed.rejected))
        rejected = [
            {"index": r.index, "field": r.field, "reason": r.reason} for r in parsed.rejected
        ]
        return Response(
            200,
            _JSON_RESPONSE_HEADERS,
            orjson.dumps({"accepted": parsed.accepted, "rejected": rejected}),
        )

    def _prepare_batch_parse(self, request: Request) -> _BatchParse:
        """Check and take the body, and gather what parsing it needs from the request."""
        body = self._take_body(
            request, self.settings.max_body_bytes, ("application/json",), text_ok=True
        )
        headers = request.headers
        return _BatchParse(
            self._current_batch_parser(),
            body,
            {
                "ip": self._client_ip(request),
                "user_agent": self._header(headers, "user-agent"),
                "referer": self._header(headers, "referer"),
                "accept_language": self._header(headers, "accept-language"),
                "request_path": "/batch",
                "request_host": self._header(headers, "host"),
            },
        )

    async def ingest(self, request: Request) -> Response:
        api_key = self._authenticate(request)
        body = self._take_body(request, self.settings.max_body_bytes, ("application/json",))
        try:
            document = orjson.loads(body)
        except orjson.JSONDecodeError:
            raise IngestError("invalid_json", "the body is not valid JSON", "body") from None
        if not isinstance(document, dict):
            raise IngestError("invalid_json", "the body must be one JSON event object", "body")

        event_type = document.get("event_type")
        if not isinstance(event_type, str):
            raise IngestError(
                "invalid_event", "event_type is required and must be a string", "event_type"
            )
        params = _string_map(document.get("params"), "params")
        params.append(("key_prefix", api_key.key_prefix))
        event_id = document.get("event_id")
        if event_id is not None and not isinstance(event_id, str):
            raise IngestError("invalid_event", "event_id must be a UUIDv7 string", "event_id")
        overrides = {}
        for name in _INGEST_HEADER_FIELDS:
            value = document.get(name)
            if value is not None and not isinstance(value, str):
                raise IngestError("invalid_event", f"{name} must be a string", name)
            overrides[name] = value
        del body, document  # not needed while waiting for durability

        event_id = await self._emit(
            event_type,
            api_key.key_prefix,
            params,
            request,
            "/ingest",
            event_id=event_id,
            overrides=overrides,
        )
        return Response(200, JSON_HEADERS, orjson.dumps({"event_id": event_id}))

    # Browser beacon.

    async def beacon(self, request: Request) -> Response:
        body = self._take_body(request, self.settings.max_beacon_bytes, BEACON_CONTENT_TYPES)
        beacon = parse_beacon(body)
        del body  # not needed while waiting for durability
        require_tenant(self.cache, beacon.key_prefix, "k")
        await self._emit(beacon.event_type, beacon.key_prefix, beacon.params, request, "/t/auto")
        return Response(204, BEACON_CORS_HEADERS, b"")

    async def beacon_preflight(self, request: Request) -> Response:
        return Response(204, PREFLIGHT_HEADERS, b"")

    async def beacon_script(self, request: Request) -> Response:
        script = self.script
        if script is None:
            raise IngestError(
                "not_found", "the beacon script t.js is not installed on this server", "path"
            )
        headers = {"ETag": script.etag, "Cache-Control": SCRIPT_CACHE_CONTROL}
        if_none_match = request.headers.get("if-none-match") or ""
        if (
            script.etag in (tag.strip() for tag in if_none_match.split(","))
            or if_none_match.strip() == "*"
        ):
            return Response(304, headers, b"")
        headers["Content-Type"] = "application/javascript"
        return Response(200, headers, script.body)

    # Operations.

    async def health(self, request: Request) -> Response:
        state = self.producer.state()
        body = {
            "status": "draining" if self.draining else "ok",
            "version": __version__,
            "broker": {"backend": state.backend, "state": state.state},
            "queue_events": state.queue_events,
            "spool_events": state.spool_events,
            "registry_age_seconds": round(self.cache.age_seconds(), 3),
            "registry_refreshes": self.cache.refresh_count,
            "tenants": len(self.cache.tenants),
            "tracking_urls": len(self.cache.links),
        }
        return Response(200, JSON_HEADERS, orjson.dumps(body))

    async def health_broker(self, request: Request) -> Response:
        state = self.producer.state()
        status = 200 if state.state == "connected" else 503
        body = {"backend": state.backend, "state": state.state, "spool_events": state.spool_events}
        return Response(status, JSON_HEADERS, orjson.dumps(body))

    async def metrics_text(self, request: Request) -> Response:
        self.update_gauges()
        return Response(
            200, {"Content-Type": "text/plain; version=0.0.4; charset=utf-8"}, render_metrics()
        )

    def update_gauges(self) -> None:
        """Publish the producer gauges and the counts handlers recorded since the last call."""
        self.metrics.flush()
        state = self.producer.state()
        self.metrics.set_producer_state(
            state.queue_events, state.spool_events, state.state == "connected"
        )

    # Shared steps.

    async def _emit(
        self,
        event_type: str,
        key_prefix: str,
        params: Sequence[tuple[str, str]],
        request: Request,
        path: str,
        *,
        event_id: str | None = None,
        overrides: dict[str, str | None] | None = None,
        endpoint: str | None = None,
    ) -> str:
        """Build one event, wait until it is durable, and return its id."""
        header = request.headers.get
        limit = self.max_field_len
        # Header values longer than an event field are cut to fit. Values sent in an
        # /ingest body are not cut, so build_event rejects them when too long.
        user_agent = (header("user-agent") or "")[:limit]
        referer = (header("referer") or "")[:limit]
        accept_language = (header("accept-language") or "")[:limit]
        if overrides:
            user_agent = overrides.get("user_agent") or user_agent
            referer = overrides.get("referer") or referer
            accept_language = overrides.get("accept_language") or accept_language
            ip = overrides.get("ip") or self._client_ip(request)
        else:
            ip = self._client_ip(request)
        try:
            event_id, event_json = build_event(
                event_type,
                params,
                ip=ip,
                user_agent=user_agent,
                referer=referer,
                accept_language=accept_language,
                request_path=path[:limit],
                request_host=(header("host") or "")[:limit],
                limits=self.event_limits,
                event_id=event_id,
            )
        except EventError as error:
            raise IngestError("invalid_event", str(error), error.field or None) from None

        partition = partition_for(key_prefix, self.partitions)
        # The same as `await self._submit(...)`, one coroutine frame shorter on the hot path.
        try:
            await self.producer.send_event(partition, event_json)
        except BrokerError as error:
            raise _unavailable(error) from None
        self.metrics.count_accepted(endpoint or path)
        return event_id

    async def _submit(self, sending: Awaitable[None]) -> None:
        """Await a producer send, turning a full queue or a broker failure into a 503."""
        try:
            await sending
        except BrokerError as error:
            raise _unavailable(error) from None

    def _query(self, request: Request, path: str) -> Query:
        # The route's path replaces request.url.path, which Robyn builds anew on each read.
        return read_query(request.query_params.to_dict(), path, self.limits)

    def _tenant_query(self, request: Request, path: str) -> tuple[str, list[tuple[str, str]]]:
        """Read /p and /i: a known active tenant, and a signature checked only when present."""
        query = self._query(request, path)
        key_prefix = query.required("key_prefix")
        tenant = require_tenant(self.cache, key_prefix)
        sig = query.single("sig")
        if sig is not None:
            _verify_pixel_signature(query, tenant.hmac_secrets, key_prefix, path, sig)
        params = query.pairs(_SIGNATURE_PARAMS)
        return key_prefix, params

    def _take_body(
        self,
        request: Request,
        limit: int,
        content_types: tuple[str, ...],
        *,
        text_ok: bool = False,
    ) -> bytes | str:
        """Return the body after the type and size checks, and clear `request.body`.

        Clearing it drops the request's own reference, so that a request waiting
        for durability does not keep its body in memory. Robyn hands a UTF-8 body
        over as str. With `text_ok`, an ASCII str is returned as it is, because its
        length in characters is its length in bytes; every other body is bytes.
        """
        headers = request.headers
        content_type = (headers.get("content-type") or "").split(";", 1)[0].strip().lower()
        if content_type not in content_types:
            raise IngestError(
                "unsupported_media_type",
                f"Content-Type must be {' or '.join(content_types)}, got {content_type[:50] or 'none'!r}",
                "content-type",
            )
        declared = headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > limit:
            raise IngestError("body_too_large", f"the body is larger than {limit} bytes", "body")
        body = request.body
        request.body = b""
        if isinstance(body, str) and not (text_ok and body.isascii()):
            body = body.encode("utf-8")
        if len(body) > limit:
            raise IngestError("body_too_large", f"the body is larger than {limit} bytes", "body")
        if not body:
            raise IngestError("invalid_json", "the body is empty", "body")
        return body

    def _authenticate(self, request: Request) -> Any:
        from tracker.registry.api_keys import verify_api_key

        header = request.headers.get("authorization") or ""
        scheme, _, raw_key = header.partition(" ")
        if scheme.lower() != "bearer" or not raw_key.strip():
            raise IngestError(
                "unauthorized",
                "send the tenant API key as Authorization: Bearer <key>",
                "authorization",
            )
        try:
            api_key = verify_api_key(self.registry, raw_key.strip())
        except AuthenticationError as error:
            raise IngestError("unauthorized", str(error), "authorization") from None
        if api_key.key_prefix is None or not api_key.allows("write"):
            raise IngestError(
                "permission_denied",
                "POST /ingest needs a tenant API key with write scope",
                "authorization",
            )
        require_tenant(self.cache, api_key.key_prefix, "authorization")
        return api_key

    def _current_batch_parser(self) -> BatchParser:
        version = self.cache.tenant_version
        if self._batch_parser is None or version != self._batch_parser_version:
            self._batch_parser = BatchParser(
                limits=self.event_limits,
                max_events=self.settings.max_batch_size,
                max_body_bytes=self.settings.max_body_bytes,
                partitions=self.partitions,
                known_tenants=self.cache.active_tenants,
            )
            self._batch_parser_version = version
        return self._batch_parser

    def _client_ip(self, request: Request) -> str:
        trusted = self.settings.trusted_proxies
        if not trusted:
            return peer_address(request.ip_addr)
        headers = request.headers
        return client_ip(
            request.ip_addr, headers.get("x-forwarded-for"), headers.get("forwarded"), trusted
        )

    def _header(self, headers: Any, name: str) -> str:
        value = headers.get(name)
        return value[: self.max_field_len] if value else ""


class _BatchParse:
    """One /batch body with its request fields, parsed on whichever thread calls `run`.

    `run` drops the body once parsed, so a request waiting for durability does
    not keep it in memory.
    """

    __slots__ = ("body", "fields", "parser", "size")

    def __init__(self, parser: BatchParser, body: bytes | str, fields: dict[str, str]) -> None:
        self.parser = parser
        self.body: bytes | str | None = body
        self.size = len(body)
        self.fields = fields

    def run(self) -> ParsedBatch:
        """Parse the body and drop it; raise IngestError when it is unusable as a whole."""
        body, self.body = self.body, None
        assert body is not None, "a batch body is parsed once"
        try:
            return self.parser.parse(body, **self.fields)
        except BatchError as error:
            raise _batch_error(error) from None


def _unavailable(error: BrokerError) -> IngestError:
    """Return the 503 for a producer send that failed: a full queue or a broker failure."""
    if isinstance(error, QueueFull):
        return IngestError("queue_full", "the server is at capacity; retry after a second", None)
    return IngestError("broker_unavailable", "events cannot be stored right now; retry later", None)


def _redirect(location: str) -> Response:
    return Response(307, {"Location": location, "Cache-Control": "no-store"}, b"")


def _verify_pixel_signature(
    query: Query, secrets: Sequence[bytes], key_prefix: str, path: str, sig: str
) -> None:
    """Check an optional /p or /i signature: it covers the path as destination and the `sp` params."""
    try:
        sig_prefix, _ = split_signature(sig)
    except SignatureError:
        raise IngestError(
            "invalid_signature", "sig is malformed: expected <key_prefix>_<64 lowercase hex>", "sig"
        ) from None
    if sig_prefix != key_prefix:
        raise IngestError(
            "invalid_signature", "sig must carry the same key prefix as key_prefix", "sig"
        )

    exp_text = query.single("exp")
    if exp_text is not None and (not exp_text.isdigit() or len(exp_text) > 19):
        raise IngestError(
            "invalid_param", "exp must be Unix seconds as a non-negative integer", "exp"
        )
    covered = []
    names = query.single("sp")
    for name in names.split(",") if names else ():
        if name in _SIGNATURE_PARAMS:
            raise IngestError(
                "invalid_param", f"sp cannot cover the reserved parameter {name!r}", "sp"
            )
        covered.append((name, query.required(name)))
    try:
        verify_click(
            secrets,
            path,
            sig,
            params=covered,
            expires_at=int(exp_text) if exp_text is not None else None,
            now=int(time.time()),
        )
    except SignatureExpired:
        raise IngestError(
            "signature_expired", "the link expired (exp is in the past)", "exp"
        ) from None
    except SignatureError:
        raise IngestError(
            "invalid_signature", "the signature does not match the request", "sig"
        ) from None


def _batch_error(error: BatchError) -> IngestError:
    field = getattr(error, "field", "") or "body"
    message = str(error)
    # BatchError carries no code, so the event-count case is recognised by its message.
    # NOTE: this depends on the extension's wording ("holds more than N events").
    if field == "events" and "more than" in message:
        return IngestError("batch_too_large", message, field)
    return IngestError("invalid_batch", message, field)


def _string_map(value: Any, field: str) -> list[tuple[str, str]]:
    if value is None:
        return []
    if not isinstance(value, dict):
        raise IngestError("invalid_event", f"{field} must be an object of string to string", field)
    pairs = []
    for name, item in value.items():
        if not isinstance(item, str):
            raise IngestError(
                "invalid_event", f"{field}.{name[:50]} must be a string", f"{field}.{name[:50]}"
            )
        pairs.append((name, item))
    return pairs
