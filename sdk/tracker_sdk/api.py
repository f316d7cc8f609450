"""TrackerApi and AsyncTrackerApi: clients of the platform API for analytics and short links.

Both send `Authorization: Bearer <api key>` and turn every error response into ApiError
with the platform's stable `code` and the `field` at fault. Request building and response
decoding live in module functions, so the two classes differ only in how they wait.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator, Mapping
from typing import Any
from urllib.parse import quote

import httpx

from tracker_sdk.errors import ApiError
from tracker_sdk.models import Event, EventPage, MatchResult, Stats, TrackingUrl

Query = Mapping[str, str | int | float | bool | None]

_EVENTS = "/api/events"
_STATS = "/api/events/stats"
_MATCH = "/api/events/match"
_TRACKING_URLS = "/api/tracking-urls"


class TrackerApi:
    """Blocking client of the platform API. Use as a context manager or call close()."""

    def __init__(
        self,
        base_url: str,
        api_key: str,
        *,
        timeout: float = 30.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self._http = httpx.Client(
            base_url=base_url.rstrip("/"),
            timeout=timeout,
            headers=_auth_headers(api_key),
            transport=transport,
        )

    def stats(self, **query: Any) -> Stats:
        """Count events; e.g. `stats(hours=48, group_by="param:sub1", event_type="click")`.

        Query names follow the API: `hours` or `from`/`to`, `event_type`, `param_key` and
        `param_value`, `group_by`, `tz`, `tier`.
        """
        return Stats.from_json(self._request("GET", _STATS, params=query))

    def events_page(self, cursor: str | None = None, **query: Any) -> EventPage:
        """Fetch one page of events; pass the previous page's `next_cursor` to continue."""
        return _event_page(self._request("GET", _EVENTS, params=_with_cursor(query, cursor)))

    def events(self, **query: Any) -> Iterator[Event]:
        """Iterate over every matching event, fetching pages as the iteration needs them."""
        cursor = None
        while True:
            page = self.events_page(cursor, **query)
            yield from page.events
            if not page.next_cursor:
                return
            cursor = page.next_cursor

    def match(self, trigger: str, result: str, on: str, **query: Any) -> MatchResult:
        """Pair `trigger` events with the `result` events that share the param `on`."""
        params = {"trigger": trigger, "result": result, "on": on, **query}
        return MatchResult.from_json(self._request("GET", _MATCH, params=params))

    def create_tracking_url(
        self,
        destination: str,
        *,
        name: str = "",
        params: Mapping[str, str] | None = None,
        key_prefix: str | None = None,
    ) -> TrackingUrl:
        """Register a short link; `key_prefix` is needed only with an admin key."""
        body = _new_tracking_url(destination, name, params, key_prefix)
        return TrackingUrl.from_json(self._request("POST", _TRACKING_URLS, json=body))

    def list_tracking_urls(self, **query: Any) -> list[TrackingUrl]:
        """Return the tenant's short links."""
        return _tracking_url_list(self._request("GET", _TRACKING_URLS, params=query))

    def get_tracking_url(self, tu_id: str) -> TrackingUrl:
        return TrackingUrl.from_json(self._request("GET", _tracking_url_path(tu_id)))

    def rotate_tracking_url(self, tu_id: str, destination: str) -> TrackingUrl:
        """Point an existing short link at a new destination; links already shared keep working."""
        data = self._request("PATCH", _tracking_url_path(tu_id), json={"destination": destination})
        return TrackingUrl.from_json(data)

    def disable_tracking_url(self, tu_id: str) -> TrackingUrl:
        """Stop redirecting a short link; clicks on it then get an error page."""
        data = self._request("PATCH", _tracking_url_path(tu_id), json={"status": "disabled"})
        return TrackingUrl.from_json(data)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> TrackerApi:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _request(
        self, method: str, path: str, *, params: Query | None = None, json: object = None
    ) -> dict[str, Any]:
        response = self._http.request(method, path, params=_clean(params), json=json)
        return _decode(response)


class AsyncTrackerApi:
    """asyncio client of the platform API; the methods match TrackerApi."""

    def __init__(
        self,
        base_url: str,
        api_key: str,
        *,
        timeout: float = 30.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self._http = httpx.AsyncClient(
            base_url=base_url.rstrip("/"),
            timeout=timeout,
            headers=_auth_headers(api_key),
            transport=transport,
        )

    async def stats(self, **query: Any) -> Stats:
        return Stats.from_json(await self._request("GET", _STATS, params=query))

    async def events_page(self, cursor: str | None = None, **query: Any) -> EventPage:
        return _event_page(await self._request("GET", _EVENTS, params=_with_cursor(query, cursor)))

    async def events(self, **query: Any) -> AsyncIterator[Event]:
        cursor = None
        while True:
            page = await self.events_page(cursor, **query)
            for event in page.events:
                yield event
            if not page.next_cursor:
                return
            cursor = page.next_cursor

    async def match(self, trigger: str, result: str, on: str, **query: Any) -> MatchResult:
        params = {"trigger": trigger, "result": result, "on": on, **query}
        return MatchResult.from_json(await self._request("GET", _MATCH, params=params))

    async def create_tracking_url(
        self,
        destination: str,
        *,
        name: str = "",
        params: Mapping[str, str] | None = None,
        key_prefix: str | None = None,
    ) -> TrackingUrl:
        body = _new_tracking_url(destination, name, params, key_prefix)
        return TrackingUrl.from_json(await self._request("POST", _TRACKING_URLS, json=body))

    async def list_tracking_urls(self, **query: Any) -> list[TrackingUrl]:
        return _tracking_url_list(await self._request("GET", _TRACKING_URLS, params=query))

    async def get_tracking_url(self, tu_id: str) -> TrackingUrl:
        return TrackingUrl.from_json(await self._request("GET", _tracking_url_path(tu_id)))

    async def rotate_tracking_url(self, tu_id: str, destination: str) -> TrackingUrl:
        data = await self._request(
            "PATCH", _tracking_url_path(tu_id), json={"destination": destination}
        )
        return TrackingUrl.from_json(data)

    async def disable_tracking_url(self, tu_id: str) -> TrackingUrl:
        data = await self._request("PATCH", _tracking_url_path(tu_id), json={"status": "disabled"})
        return TrackingUrl.from_json(data)

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> AsyncTrackerApi:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def _request(
        self, method: str, path: str, *, params: Query | None = None, json: object = None
    ) -> dict[str, Any]:
        response = await self._http.request(method, path, params=_clean(params), json=json)
        return _decode(response)


def _auth_headers(api_key: str) -> dict[str, str]:
    if not api_key:
        raise ValueError("api_key is empty: pass the tenant's API key (trk_...)")
    return {"Authorization": f"Bearer {api_key}", "Accept": "application/json"}


def _clean(query: Query | None) -> dict[str, str] | None:
    if not query:
        return None
    cleaned = {}
    for name, value in query.items():
        if value is None:
            continue
        if isinstance(value, bool):
            cleaned[name] = "true" if value else "false"
        else:
            cleaned[name] = str(value)
    return cleaned


def _with_cursor(query: Mapping[str, Any], cursor: str | None) -> dict[str, Any]:
    return {**query, "cursor": cursor} if cursor else dict(query)


def _tracking_url_path(tu_id: str) -> str:
    if not tu_id:
        raise ValueError("tu_id is empty")
    return f"{_TRACKING_URLS}/{quote(tu_id, safe='')}"


def _new_tracking_url(
    destination: str, name: str, params: Mapping[str, str] | None, key_prefix: str | None
) -> dict[str, Any]:
    body: dict[str, Any] = {"destination": destination, "name": name, "params": dict(params or {})}
    if key_prefix is not None:
        body["key_prefix"] = key_prefix
    return body


def _decode(response: httpx.Response) -> dict[str, Any]:
    """Return the JSON object of a 2xx response, or raise ApiError for any other response."""
    try:
        data = response.json()
    except ValueError:
        data = None
    if response.is_success:
        if not isinstance(data, dict):
            raise ApiError(
                response.status_code,
                "invalid_response",
                "the API returned something other than a JSON object",
            )
        return data

    detail = data.get("error", data) if isinstance(data, dict) else {}
    if not isinstance(detail, dict):
        detail = {"message": str(detail)}
    code = str(detail.get("code") or f"http_{response.status_code}")
    message = str(detail.get("message") or response.reason_phrase or "request failed")
    field = detail.get("field")
    raise ApiError(response.status_code, code, message, None if field is None else str(field))


def _event_page(data: dict[str, Any]) -> EventPage:
    events = [Event.from_json(item) for item in data.get("events") or []]
    cursor = data.get("next_cursor") or None
    return EventPage(
        events=events,
        next_cursor=cursor,
        tier=data.get("tier"),
        data_through_ms=data.get("data_through_ms"),
        raw=data,
    )


def _tracking_url_list(data: dict[str, Any]) -> list[TrackingUrl]:
    items = data.get("tracking_urls") or []
    return [TrackingUrl.from_json(item) for item in items]
