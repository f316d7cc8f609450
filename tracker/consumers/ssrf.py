"""Server-side request forgery guard for webhook destinations.

A webhook URL is chosen by a tenant, so the consumer must not become a way to
reach the platform's own network. A destination is allowed only when every
address its host resolves to is a global unicast address, or falls inside a
CIDR the operator allowed. The checked address is the one the client then
connects to (see `webhook_delivery`), so a second DNS answer cannot swap it.

`WEBHOOK_ALLOW_PRIVATE_NETWORKS=true` allows loopback, private, link-local,
CGNAT and unique-local ranges, but not the cloud metadata addresses below:
those pass only when a `WEBHOOK_ALLOWED_CIDRS` entry contains them.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from urllib.parse import urlsplit

from tracker.settings import Env

__all__ = [
    "METADATA_ADDRESSES",
    "DestinationRejected",
    "NetworkPolicy",
    "Resolver",
    "check_address",
    "check_url",
    "resolve_destination",
    "system_resolver",
]

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

# Instance metadata services: AWS, GCP and Azure IMDS (IPv4 link-local), AWS over IPv6,
# Alibaba Cloud (inside CGNAT space) and the Azure wire server (a public address).
METADATA_ADDRESSES: frozenset[IPAddress] = frozenset(
    ipaddress.ip_address(text)
    for text in ("169.254.169.254", "fd00:ec2::254", "100.100.100.200", "168.63.129.16")
)

_CGNAT = ipaddress.ip_network("100.64.0.0/10")
_SIX_TO_FOUR = ipaddress.ip_network("2002::/16")
_NAT64 = ipaddress.ip_network("64:ff9b::/96")

MAX_URL_LENGTH = 2048

Resolver = Callable[[str, int], Awaitable[list[IPAddress]]]


class DestinationRejected(ValueError):
    """A webhook URL is malformed or points at an address the policy does not allow."""


@dataclass(frozen=True, slots=True)
class NetworkPolicy:
    """Non-global address ranges that webhooks may reach."""

    allow_private: bool = False
    allowed_cidrs: tuple[IPNetwork, ...] = ()

    @classmethod
    def from_env(cls, env: Env) -> NetworkPolicy:
        return cls(
            allow_private=env.bool("WEBHOOK_ALLOW_PRIVATE_NETWORKS", False),
            allowed_cidrs=env.networks("WEBHOOK_ALLOWED_CIDRS"),
        )


def _embedded_ipv4(address: IPAddress) -> ipaddress.IPv4Address | None:
    if not isinstance(address, ipaddress.IPv6Address):
        return None
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address in _SIX_TO_FOUR:
        return address.sixtofour
    if address in _NAT64:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None


def _blocked_reason(address: IPAddress) -> str | None:
    """Return why `address` is not a plain global unicast address, or None if it is."""
    if address in METADATA_ADDRESSES:
        return "a cloud metadata address"
    if address.is_unspecified:
        return "the unspecified address"
    if address.is_loopback:
        return "a loopback address"
    if address.is_multicast:
        return "a multicast address"
    if address.is_link_local:
        return "a link-local address"
    if isinstance(address, ipaddress.IPv4Address) and address in _CGNAT:
        return "a carrier-grade NAT (100.64.0.0/10) address"
    if isinstance(address, ipaddress.IPv6Address) and address in ipaddress.ip_network("fc00::/7"):
        return "a unique-local address"
    if address.is_private:
        return "a private address"
    if not address.is_global:
        return "a reserved address"
    return None


def check_address(address: IPAddress, policy: NetworkPolicy) -> None:
    """Raise DestinationRejected unless `policy` allows connecting to `address`."""
    if any(
        address in network for network in policy.allowed_cidrs if network.version == address.version
    ):
        return
    embedded = _embedded_ipv4(address)
    if embedded is not None:
        # IPv4-mapped, 6to4 and NAT64 addresses reach the IPv4 address they carry.
        check_address(embedded, policy)
        return
    reason = _blocked_reason(address)
    if reason is None:
        return
    if policy.allow_private and address not in METADATA_ADDRESSES and not address.is_multicast:
        return
    raise DestinationRejected(
        f"url: the destination resolves to {address}, {reason}; webhooks may only reach public"
        " addresses unless WEBHOOK_ALLOWED_CIDRS or WEBHOOK_ALLOW_PRIVATE_NETWORKS allows it"
    )


@dataclass(frozen=True, slots=True)
class ParsedUrl:
    """The parts of a webhook URL the delivery client needs."""

    scheme: str
    host: str
    port: int
    literal: IPAddress | None


def check_url(url: str, policy: NetworkPolicy) -> ParsedUrl:
    """Validate a webhook URL's form and, for a literal IP host, its address.

    Host names are not resolved here but at each delivery, because DNS records
    can change. Names under `localhost` are rejected like 127.0.0.1.
    """
    if not isinstance(url, str) or not url:
        raise DestinationRejected("url: is required, for example https://example.com/hooks")
    if len(url) > MAX_URL_LENGTH:
        raise DestinationRejected(
            f"url: is {len(url)} characters long, the maximum is {MAX_URL_LENGTH}"
        )
    if any(ord(character) < 0x21 or ord(character) == 0x7F for character in url):
        raise DestinationRejected("url: contains whitespace or control characters")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as error:
        raise DestinationRejected(f"url: is not a valid URL ({error})") from None
    if parts.scheme not in ("http", "https"):
        raise DestinationRejected(
            f"url: the scheme must be http or https, got {parts.scheme[:20]!r}"
        )
    if parts.username is not None or parts.password is not None:
        raise DestinationRejected(
            "url: must not contain credentials; sign requests with the webhook secret"
        )
    if parts.fragment:
        raise DestinationRejected("url: must not contain a fragment")
    host = parts.hostname
    if not host:
        raise DestinationRejected("url: has no host")
    if port is None:
        port = 443 if parts.scheme == "https" else 80

    try:
        literal: IPAddress | None = ipaddress.ip_address(host)
    except ValueError:
        literal = None
    if literal is not None:
        check_address(literal, policy)
    elif host.rstrip(".") == "localhost" or host.rstrip(".").endswith(".localhost"):
        check_address(ipaddress.ip_address("127.0.0.1"), policy)
    return ParsedUrl(scheme=parts.scheme, host=host, port=port, literal=literal)


async def system_resolver(host: str, port: int) -> list[IPAddress]:
    """Resolve `host` with the operating system's resolver (getaddrinfo)."""
    loop = asyncio.get_running_loop()
    try:
        infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as error:
        raise OSError(f"could not resolve {host[:100]!r}: {error.strerror}") from None
    addresses: list[IPAddress] = []
    for _family, _type, _proto, _name, sockaddr in infos:
        address = ipaddress.ip_address(sockaddr[0].split("%", 1)[0])
        if address not in addresses:
            addresses.append(address)
    return addresses


async def resolve_destination(
    parsed: ParsedUrl, policy: NetworkPolicy, resolver: Resolver
) -> IPAddress:
    """Return the address to connect to; every resolved address must pass `policy`.

    Rejecting the whole name when any one address is blocked keeps a host with a
    public and a private record from reaching the private one on a retry.
    """
    if parsed.literal is not None:
        check_address(parsed.literal, policy)
        return parsed.literal
    addresses = await resolver(parsed.host, parsed.port)
    if not addresses:
        raise OSError(f"could not resolve {parsed.host[:100]!r}: no addresses")
    for address in addresses:
        check_address(address, policy)
    return addresses[0]
