"""Reading a Robyn request: strict query decoding, size limits and the client IP.

Robyn 0.88 hands query values over still percent-encoded (`+` included) and
gives no raw query string, so every name and value is decoded here exactly
once: `+` becomes a space (HTML form encoding, which `urlencode` produces),
then `%XX` escapes are decoded and the bytes must be UTF-8. Everything else in
the service works on decoded text.
"""

from __future__ import annotations

import functools
import ipaddress
from dataclasses import dataclass

from tracker._core import QueryStringError, decode_query, decode_query_component
from tracker.ingest.errors import IngestError

__all__ = [
    "Query",
    "RequestLimits",
    "check_headers",
    "client_ip",
    "decode_component",
    "peer_address",
    "read_query",
]

_FIELD_ECHO = 50

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True, slots=True)
class RequestLimits:
    """Size limits applied to every request before any handler logic."""

    max_url_bytes: int
    max_header_bytes: int
    max_params: int
    max_param_key_len: int
    max_param_value_len: int


class Query:
    """Decoded query parameters: each name with its values in request order."""

    __slots__ = ("values",)

    def __init__(self, values: dict[str, list[str]]) -> None:
        self.values = values

    def single(self, name: str) -> str | None:
        """Return the one value of `name`, None if absent; raise duplicate_param if repeated."""
        found = self.values.get(name)
        if found is None:
            return None
        if len(found) > 1:
            raise IngestError("duplicate_param", f"query parameter {name!r} must appear once", name)
        return found[0]

    def required(self, name: str) -> str:
        """Return the one value of `name`; raise missing_param if absent or empty."""
        value = self.single(name)
        if not value:
            raise IngestError("missing_param", f"query parameter {name!r} is required", name)
        return value

    def pairs(self, excluded: frozenset[str] = frozenset()) -> list[tuple[str, str]]:
        """Return (name, value) pairs except `excluded` names; repeated names keep the last value."""
        return [(name, values[-1]) for name, values in self.values.items() if name not in excluded]


def decode_component(text: str, field: str) -> str:
    """Decode one query name or value; raise invalid_encoding naming the field."""
    try:
        return decode_query_component(text, field)
    except QueryStringError as error:
        raise _query_error(error, None) from None


def read_query(raw: dict[str, list[str]], path: str, limits: RequestLimits) -> Query:
    """Check URL length and parameter limits, then decode every name and value once.

    The URL length is the path plus the encoded query as received, which is
    what the client sent up to the `?` and `&` separators. The extension does
    the work, and this function turns its QueryStringError into the IngestError to return.
    """
    try:
        values = decode_query(
            raw,
            len(path),
            limits.max_url_bytes,
            limits.max_params,
            limits.max_param_key_len,
            limits.max_param_value_len,
        )
    except QueryStringError as error:
        raise _query_error(error, limits) from None
    return Query(values)


def _query_error(error: QueryStringError, limits: RequestLimits | None) -> IngestError:
    """Return the IngestError for a QueryStringError from the extension."""
    code = error.code
    field = str(error.field or "")[:_FIELD_ECHO]
    if code == "invalid_escape":
        return IngestError(
            "invalid_encoding", f"query parameter {field!r} has an invalid percent-escape", field
        )
    if code == "invalid_utf8":
        return IngestError(
            "invalid_encoding",
            f"query parameter {field!r} is not valid UTF-8 after decoding",
            field,
        )
    assert limits is not None, code
    if code == "url_too_long":
        return IngestError(
            "url_too_long", f"the request URL is longer than {limits.max_url_bytes} bytes", "url"
        )
    if code == "too_many_params":
        return IngestError(
            "too_many_params",
            f"the request has {error.count} query parameters;"
            f" at most {limits.max_params} are allowed",
            "query",
        )
    if code == "name_too_long":
        return IngestError(
            "param_too_long",
            f"a query parameter name is longer than {limits.max_param_key_len} characters",
            field,
        )
    return IngestError(
        "param_too_long",
        f"query parameter {field!r} is longer than {limits.max_param_value_len} characters",
        field,
    )


def check_headers(headers: list[tuple[str, str]], max_header_bytes: int) -> None:
    """Raise headers_too_large when names and values together pass `max_header_bytes`."""
    total = 0
    for name, value in headers:
        total += len(name) + len(value) + 4
    if total > max_header_bytes:
        raise IngestError(
            "headers_too_large",
            f"request headers are larger than {max_header_bytes} bytes",
            "headers",
        )


def client_ip(
    peer: str | None,
    forwarded_for: str | None,
    forwarded: str | None,
    trusted: tuple[Network, ...],
) -> str:
    """Return the client address: the socket peer, or the proxy-reported one behind trusted proxies.

    Only when the peer is in `trusted` are `X-Forwarded-For` (preferred) or
    `Forwarded: for=` (RFC 7239) read. Their hops are walked from the right,
    skipping trusted proxies, and the first untrusted hop is the client. A hop
    that is not an IP address ends the walk at the last good hop.
    """
    if not trusted:
        return peer_address(peer)
    peer_ip = _parse_ip(peer or "")
    if peer_ip is None:
        return peer or ""
    if not _is_trusted(peer_ip, trusted):
        return str(peer_ip)

    if forwarded_for:
        hops = [hop.strip() for hop in forwarded_for.split(",")]
    elif forwarded:
        hops = _forwarded_for_hops(forwarded)
    else:
        return str(peer_ip)

    client = peer_ip
    for hop in reversed(hops):
        address = _parse_ip(hop)
        if address is None:
            break
        client = address
        if not _is_trusted(address, trusted):
            break
    return str(client)


@functools.lru_cache(maxsize=8192)
def peer_address(peer: str | None) -> str:
    """Return the socket peer as `client_ip` reports it when no proxy is trusted.

    That is the address without port or brackets, an IPv4-mapped IPv6 address
    as IPv4, and text that is not an address unchanged.
    """
    address = _parse_ip(peer or "")
    return (peer or "") if address is None else str(address)


def _forwarded_for_hops(header: str) -> list[str]:
    hops = []
    for element in header.split(","):
        for pair in element.split(";"):
            name, _, value = pair.strip().partition("=")
            if name.strip().lower() == "for":
                hops.append(value.strip().strip('"'))
    return hops


# Peers and proxy hops repeat across requests, and ipaddress parsing is slow in Python.
@functools.lru_cache(maxsize=8192)
def _parse_ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """Parse `1.2.3.4`, `1.2.3.4:80`, `::1`, `[::1]` or `[::1]:80`, or return None for other text."""
    text = text.strip()
    if text.startswith("["):
        end = text.find("]")
        if end == -1:
            return None
        text = text[1:end]
    elif text.count(":") == 1:
        text = text.split(":", 1)[0]
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def _is_trusted(
    address: ipaddress.IPv4Address | ipaddress.IPv6Address, trusted: tuple[Network, ...]
) -> bool:
    return any(address.version == network.version and address in network for network in trusted)
