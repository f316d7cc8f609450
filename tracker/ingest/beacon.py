"""The browser beacon: parsing `POST /t/auto` bodies and serving the `t.js` script.

The protocol is written up in docs/beacon-protocol.md. A body is one JSON
object `{"k", "t", "u", "r"?, "c"?, "p"?}` sent as `text/plain` (what
`navigator.sendBeacon` sends for a string) or `application/json`.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import orjson

from tracker.ingest.destinations import InvalidDestination, parse_destination
from tracker.ingest.errors import IngestError

__all__ = [
    "BEACON_CONTENT_TYPES",
    "BeaconEvent",
    "BeaconScript",
    "load_beacon_script",
    "parse_beacon",
]

BEACON_CONTENT_TYPES = ("text/plain", "application/json")
MAX_PAGE_URL_LEN = 2048
MAX_BEACON_PARAMS = 32
BEACON_PATH_ENV = "BEACON_JS_PATH"


@dataclass(frozen=True, slots=True)
class BeaconEvent:
    """The event fields a beacon body supplies: tenant, event type and params."""

    key_prefix: str
    event_type: str
    params: list[tuple[str, str]]


@dataclass(frozen=True, slots=True)
class BeaconScript:
    """The `t.js` bytes and their strong ETag, loaded once at start-up."""

    body: bytes
    etag: str


def parse_beacon(body: bytes) -> BeaconEvent:
    """Validate a beacon body; raise IngestError naming the bad field."""
    try:
        document = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise IngestError("invalid_json", "the beacon body is not valid JSON", "body") from None
    if not isinstance(document, dict):
        raise IngestError("invalid_json", "the beacon body must be a JSON object", "body")

    key_prefix = _string(document, "k", required=True)
    event_type = _string(document, "t", required=True)
    page_url = _string(document, "u", required=True)
    if len(page_url) > MAX_PAGE_URL_LEN:
        raise IngestError("invalid_param", f"u is longer than {MAX_PAGE_URL_LEN} characters", "u")
    try:
        parse_destination(page_url)
    except InvalidDestination as error:
        raise IngestError("invalid_param", f"u is not a page URL: {error}", "u") from None
    referrer = _string(document, "r", required=False)
    click_id = _string(document, "c", required=False)

    extra = document.get("p")
    params: list[tuple[str, str]] = []
    if extra is not None:
        if not isinstance(extra, dict):
            raise IngestError("invalid_param", "p must be an object of string to string", "p")
        if len(extra) > MAX_BEACON_PARAMS:
            raise IngestError(
                "too_many_params", f"p has more than {MAX_BEACON_PARAMS} entries", "p"
            )
        for name, value in extra.items():
            if not isinstance(value, str):
                raise IngestError(
                    "invalid_param", f"p.{name[:50]} must be a string", f"p.{name[:50]}"
                )
            params.append((name, value))

    params.append(("url", page_url))
    if referrer:
        params.append(("referrer", referrer))
    if click_id:
        params.append(("ad_click_id", click_id))
    params.append(("key_prefix", key_prefix))
    return BeaconEvent(key_prefix=key_prefix, event_type=event_type, params=params)


def load_beacon_script(path: Path | None = None) -> BeaconScript | None:
    """Read `t.js` from BEACON_JS_PATH or the packaged copy; None if missing.

    `static/t.js` is a symbolic link to the repository's `beacon/t.js`; building the
    wheel stores the file itself, so installed packages serve the same bytes.
    """
    if path is None:
        configured = os.environ.get(BEACON_PATH_ENV)
        path = Path(configured) if configured else Path(__file__).parent / "static" / "t.js"
    try:
        body = path.read_bytes()
    except OSError:
        return None
    etag = '"' + hashlib.sha256(body).hexdigest()[:32] + '"'
    return BeaconScript(body=body, etag=etag)


def _string(document: dict, name: str, *, required: bool) -> str:
    value = document.get(name)
    if value is None:
        if required:
            raise IngestError("missing_param", f"{name} is required in the beacon body", name)
        return ""
    if not isinstance(value, str):
        raise IngestError("invalid_param", f"{name} must be a string", name)
    if required and not value:
        raise IngestError("missing_param", f"{name} must not be empty", name)
    return value
