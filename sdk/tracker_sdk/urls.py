"""Pure functions that build click, short-link, postback and impression URLs.

Nothing here touches the network. Signed and encrypted click URLs follow the platform's
wire format byte for byte (see `tracker_sdk._wire`), so the ingest service verifies them.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from urllib.parse import quote, urlsplit

from tracker_sdk import _wire

Params = Mapping[str, str] | Sequence[tuple[str, str]]
"""Query params as a mapping or as (name, value) pairs; pairs keep repeats and order."""

SIGNED_RESERVED = frozenset({"url", "sig", "exp", "sp"})
ENCRYPTED_RESERVED = frozenset({"d"})
PIXEL_RESERVED = frozenset({"key_prefix", "sig", "exp", "sp"})
MAX_DESTINATION_LEN = 2048

_TU_ID = re.compile(r"[A-Za-z0-9_-]{1,128}")


def build_signed_click_url(
    base_url: str,
    secret: bytes | str,
    destination: str,
    *,
    key_prefix: str | None = None,
    params: Params | None = None,
    signed_params: Iterable[str] = (),
    expires_at: int | None = None,
) -> str:
    """Build `/t?url=...&sig=...` signed with HMAC-SHA256.

    `secret` is the tenant's secret when `key_prefix` is given, else the platform-wide
    `HMAC_SECRET`. Names in `signed_params` must appear exactly once in `params`; those params
    are covered by the signature. Anyone who has the link can change the others.
    `expires_at` is Unix seconds. Raises ValueError on any invalid argument.
    """
    secret_bytes = secret.encode() if isinstance(secret, str) else bytes(secret)
    if not secret_bytes:
        raise ValueError("invalid secret: it must not be empty")
    _check_destination(destination)
    pairs = _param_pairs(params, reserved=SIGNED_RESERVED)
    covered_names = _covered_names(signed_params, pairs)
    covered = [(name, value) for name, value in pairs if name in covered_names]

    sig = _wire.sign(
        secret_bytes,
        destination,
        key_prefix=key_prefix,
        covered=covered,
        expires_at=expires_at,
    )

    query: list[tuple[str, str]] = [("url", destination), ("sig", sig)]
    if expires_at is not None:
        query.append(("exp", str(expires_at)))
    if covered_names:
        query.append(("sp", ",".join(sorted(covered_names))))
    query.extend(pairs)
    return _join(base_url, "/t", query)


def build_encrypted_click_url(
    base_url: str,
    key: bytes | str,
    key_id: int,
    destination: str,
    *,
    key_prefix: str | None = None,
    hidden_params: Params | None = None,
    params: Params | None = None,
    expires_at: int | None = None,
    nonce: bytes | None = None,
) -> str:
    """Build `/t?d=...` with the destination and `hidden_params` sealed by AES-256-GCM.

    `key` is 32 bytes, or 64 hex digits as text. `params` stay visible in the query.
    `nonce` exists for reproducible test vectors only; leave it None so each URL gets a
    fresh random nonce. Needs the `encrypted` extra (the `cryptography` package).
    """
    key_bytes = bytes.fromhex(key) if isinstance(key, str) else bytes(key)
    _check_destination(destination)
    hidden = _param_pairs(hidden_params, reserved=frozenset())
    visible = _param_pairs(params, reserved=ENCRYPTED_RESERVED)

    blob = _wire.encrypt(
        key_bytes,
        key_id,
        destination,
        key_prefix=key_prefix,
        hidden=hidden,
        expires_at=expires_at,
        nonce=nonce,
    )
    return _join(base_url, "/t", [("d", blob), *visible])


def build_short_url(base_url: str, tu_id: str, params: Params | None = None) -> str:
    """Build `/t/<tu_id>` for a tracking URL registered on the platform."""
    if not isinstance(tu_id, str) or not _TU_ID.fullmatch(tu_id):
        raise ValueError(
            f"invalid tu_id {_wire._clip(tu_id)!r}: expected 1 to 128 characters of [A-Za-z0-9_-]"
        )
    return _join(base_url, f"/t/{tu_id}", _param_pairs(params, reserved=frozenset()))


def build_postback_url(
    base_url: str,
    key_prefix: str,
    params: Params | None = None,
    *,
    secret: bytes | str | None = None,
    signed_params: Iterable[str] = (),
    expires_at: int | None = None,
) -> str:
    """Build `/p?key_prefix=...`, a server-to-server conversion (postback) URL.

    Pass the click's `ad_click_id` as a param such as `click_id` so the platform can match
    the postback to the click. With the tenant's `secret`, the URL carries a signature over
    the path `/p`, the `signed_params` and `expires_at`, which the server then enforces.
    """
    return _tenant_url(base_url, "/p", key_prefix, params, secret, signed_params, expires_at)


def build_impression_url(
    base_url: str,
    key_prefix: str,
    params: Params | None = None,
    *,
    secret: bytes | str | None = None,
    signed_params: Iterable[str] = (),
    expires_at: int | None = None,
) -> str:
    """Build `/i?key_prefix=...`, an impression pixel that returns a 1x1 GIF.

    Signing works as in build_postback_url(), over the path `/i`.
    """
    return _tenant_url(base_url, "/i", key_prefix, params, secret, signed_params, expires_at)


def _tenant_url(
    base_url: str,
    path: str,
    key_prefix: str,
    params: Params | None,
    secret: bytes | str | None,
    signed_params: Iterable[str],
    expires_at: int | None,
) -> str:
    _wire.check_key_prefix(key_prefix)
    pairs = _param_pairs(params, reserved=PIXEL_RESERVED)
    query = [("key_prefix", key_prefix)]
    if secret is None:
        if signed_params or expires_at is not None:
            raise ValueError("signed_params and expires_at need the tenant's secret")
        return _join(base_url, path, query + pairs)

    secret_bytes = secret.encode() if isinstance(secret, str) else bytes(secret)
    if not secret_bytes:
        raise ValueError("invalid secret: it must not be empty")
    covered_names = _covered_names(signed_params, pairs)
    covered = [(name, value) for name, value in pairs if name in covered_names]
    # The server verifies the path itself as the signed destination.
    sig = _wire.sign(
        secret_bytes, path, key_prefix=key_prefix, covered=covered, expires_at=expires_at
    )
    query.append(("sig", sig))
    if expires_at is not None:
        query.append(("exp", str(expires_at)))
    if covered_names:
        query.append(("sp", ",".join(sorted(covered_names))))
    return _join(base_url, path, query + pairs)


def _check_destination(destination: str) -> None:
    if not isinstance(destination, str):
        raise TypeError(f"destination must be str, got {type(destination).__name__}")
    if len(destination) > MAX_DESTINATION_LEN:
        raise ValueError(
            f"destination is {len(destination)} characters, the maximum is {MAX_DESTINATION_LEN}"
        )
    parts = urlsplit(destination)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(
            f"invalid destination {_wire._clip(destination)!r}: expected an absolute http(s) URL"
        )


def _param_pairs(params: Params | None, *, reserved: frozenset[str]) -> list[tuple[str, str]]:
    if params is None:
        return []
    items = params.items() if isinstance(params, Mapping) else params
    pairs: list[tuple[str, str]] = []
    for item in items:
        name, value = item
        if not isinstance(name, str) or not isinstance(value, str):
            raise TypeError(f"param {_wire._clip(name)!r}: names and values must be str")
        if not name:
            raise ValueError("invalid param name: it must not be empty")
        if name in reserved:
            raise ValueError(
                f"param name {name!r} is reserved by the URL format; choose another name"
            )
        pairs.append((name, value))
    return pairs


def _covered_names(signed_params: Iterable[str], pairs: list[tuple[str, str]]) -> set[str]:
    if isinstance(signed_params, str):
        raise TypeError("signed_params must be a collection of names, not one str")
    covered = set(signed_params)
    counts: dict[str, int] = {}
    for name, _ in pairs:
        counts[name] = counts.get(name, 0) + 1
    for name in sorted(covered):
        if "," in name:
            raise ValueError(f"signed param name {name!r} contains a comma, which sp cannot carry")
        if counts.get(name, 0) != 1:
            raise ValueError(
                f"signed param {name!r} must appear exactly once in params, "
                f"found {counts.get(name, 0)}"
            )
    return covered


def _join(base_url: str, path: str, query: list[tuple[str, str]]) -> str:
    base = base_url.rstrip("/")
    parts = urlsplit(base)
    if parts.scheme not in ("http", "https") or not parts.netloc or parts.query:
        raise ValueError(
            f"invalid base_url {_wire._clip(base_url)!r}: expected http(s)://host[:port][/path]"
        )
    if not query:
        return base + path
    encoded = "&".join(f"{quote(name, safe='')}={quote(value, safe='')}" for name, value in query)
    return f"{base}{path}?{encoded}"
