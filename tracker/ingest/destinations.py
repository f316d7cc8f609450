"""Redirect destinations: which URLs a click may go to, and how the click id is added.

One rule serves `/t`, `/t/<tu_id>` and the tracking-URL registry, so a link that
the registry accepts is exactly a link the redirect endpoints follow. A
destination is an absolute `http` or `https` URL with a host and without
userinfo, backslashes or control characters (tab and newline included). A
space in the path, query or fragment is allowed and sent as `%20`, as
browsers do.
"""

from __future__ import annotations

import functools
import ipaddress
import re
from dataclasses import dataclass, field
from urllib.parse import unquote

import idna

__all__ = [
    "AD_CLICK_ID",
    "MAX_DESTINATION_LEN",
    "Destination",
    "InvalidDestination",
    "parse_destination",
    "parse_destination_cached",
    "redirect_location",
]

AD_CLICK_ID = "ad_click_id"
MAX_DESTINATION_LEN = 4096

_FORBIDDEN = re.compile(r"[\x00-\x1f\x7f\\]")
_SCHEME = re.compile(r"^(https?)://", re.IGNORECASE)
_HOST_LABEL = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$")
_PORT = re.compile(r"^[0-9]{1,5}$")
# Characters a Location header may carry as they are; anything else is percent-encoded.
_SAFE_URL_BYTES = frozenset(
    b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~:/?#[]@!$&'()*+,;=%"
)


class InvalidDestination(ValueError):
    """The destination is not an absolute http(s) URL that may be redirected to."""


@dataclass(frozen=True, slots=True)
class Destination:
    """A validated destination split into the ASCII origin and the rest as given.

    `origin` is `scheme://host[:port]` with the host in punycode; `path`, `query`
    and `fragment` keep their percent-encoding byte for byte. `location_parts`
    is the encoded Location text before and after the click id, built once here
    because redirects to one destination repeat.
    """

    origin: str
    path: str
    query: str | None
    fragment: str | None
    location_parts: tuple[str, str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        # A frozen dataclass allows setting a field only through object.__setattr__.
        object.__setattr__(self, "location_parts", _location_around_click_id(self))


def parse_destination(url: str) -> Destination:
    """Validate `url` as a redirect destination; raise InvalidDestination saying why."""
    if not url:
        raise InvalidDestination("destination is empty")
    if len(url) > MAX_DESTINATION_LEN:
        raise InvalidDestination(f"destination is longer than {MAX_DESTINATION_LEN} characters")
    if _FORBIDDEN.search(url):
        raise InvalidDestination("destination contains a control character or a backslash")
    scheme_match = _SCHEME.match(url)
    if scheme_match is None:
        raise InvalidDestination("destination must be an absolute http:// or https:// URL")
    scheme = scheme_match.group(1).lower()
    rest = url[scheme_match.end() :]

    authority_end = len(rest)
    for delimiter in "/?#":
        position = rest.find(delimiter)
        if position != -1 and position < authority_end:
            authority_end = position
    authority = rest[:authority_end]
    rest = rest[authority_end:]

    origin = f"{scheme}://{_parse_authority(authority)}"
    path, fragment = _split_once(rest, "#")
    path, query = _split_once(path, "?")
    return Destination(origin=origin, path=path, query=query, fragment=fragment)


# Signed links and short links repeat the same destinations, so handlers parse through a
# bounded cache. Destination is frozen, so sharing one instance is safe.
parse_destination_cached = functools.lru_cache(maxsize=4096)(parse_destination)


def redirect_location(destination: Destination, click_id: str) -> str:
    """Build the Location header: the destination with `ad_click_id=<click_id>` in its query.

    Every existing `ad_click_id` pair is removed, because the click being
    recorded now is the one the landing page must report; the new pair goes
    last. Other pairs keep their order and bytes. Characters a header cannot
    carry (spaces and non-ASCII) are percent-encoded as UTF-8.
    """
    head, tail = destination.location_parts
    if not click_id.isascii() or " " in click_id:
        click_id = _encode_unsafe(click_id)
    return head + click_id + tail


# Percent-encoding works byte by byte, so the parts before and after the click id can be
# encoded once per destination.
def _location_around_click_id(destination: Destination) -> tuple[str, str]:
    """Return the encoded Location text before and after the click id of `destination`."""
    pairs = []
    if destination.query:
        pairs = [pair for pair in destination.query.split("&") if not _is_click_id_pair(pair)]
    pairs.append(f"{AD_CLICK_ID}=")
    head = f"{destination.origin}{_encode_unsafe(destination.path) or '/'}?{_encode_unsafe('&'.join(pairs))}"
    tail = ""
    if destination.fragment is not None:
        tail = "#" + _encode_unsafe(destination.fragment)
    return head, tail


def _parse_authority(authority: str) -> str:
    if not authority:
        raise InvalidDestination("destination has no host")
    if "@" in authority:
        raise InvalidDestination("destination must not contain userinfo (user@host)")
    if "%" in authority:
        raise InvalidDestination("destination host must not be percent-encoded")

    if authority.startswith("["):
        closing = authority.find("]")
        if closing == -1:
            raise InvalidDestination("destination has an unclosed IPv6 bracket")
        literal = authority[1:closing]
        try:
            ipaddress.IPv6Address(literal)
        except ValueError:
            raise InvalidDestination("destination has an invalid IPv6 address") from None
        host = f"[{literal.lower()}]"
        port_part = authority[closing + 1 :]
    else:
        host_text, colon, port_text = authority.partition(":")
        host = _ascii_host(host_text)
        port_part = colon + port_text

    if port_part:
        if (
            not port_part.startswith(":")
            or not _PORT.match(port_part[1:])
            or int(port_part[1:]) > 65535
        ):
            raise InvalidDestination("destination has an invalid port")
        return f"{host}{port_part}"
    return host


def _ascii_host(host: str) -> str:
    if not host:
        raise InvalidDestination("destination has no host")
    if host.isascii():
        lowered = host.lower()
        if all(_HOST_LABEL.match(label) for label in lowered.split(".")):
            return lowered
        raise InvalidDestination("destination host is not a valid host name")
    try:
        encoded = idna.encode(host, uts46=True).decode("ascii")
    except idna.IDNAError:
        raise InvalidDestination(
            "destination host is not a valid internationalised domain name"
        ) from None
    return encoded


def _split_once(text: str, separator: str) -> tuple[str, str | None]:
    head, found, tail = text.partition(separator)
    return (head, tail) if found else (head, None)


def _is_click_id_pair(pair: str) -> bool:
    name = pair.split("=", 1)[0]
    return name == AD_CLICK_ID or (
        ("%" in name or "+" in name) and unquote(name.replace("+", " ")) == AD_CLICK_ID
    )


def _encode_unsafe(text: str) -> str:
    if text.isascii() and " " not in text:
        return text
    encoded = bytearray()
    for byte in text.encode("utf-8"):
        if byte in _SAFE_URL_BYTES:
            encoded.append(byte)
        else:
            encoded.extend(b"%%%02X" % byte)
    return encoded.decode("ascii")
