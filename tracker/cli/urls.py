"""`tracker urls`: make signed and encrypted click URLs, and manage short links."""

from __future__ import annotations

import json
import time
from typing import Any
from urllib.parse import quote

import typer

from tracker.cli.registry import opened_registry
from tracker.cli.tenants import JSON_OPTION

__all__ = ["urls_app"]

urls_app = typer.Typer(
    help="Make signed and encrypted click URLs, and manage short links.", no_args_is_help=True
)

BASE_URL_OPTION = typer.Option(
    "http://127.0.0.1:3030", "--base-url", help="Address of the ingest service."
)
PARAM_OPTION = typer.Option(
    None, "--param", "-p", help="Extra query parameter NAME=VALUE; repeatable."
)


def _parse_params(values: list[str] | None) -> list[tuple[str, str]]:
    pairs = []
    for text in values or ():
        name, equals, value = text.partition("=")
        if not equals or not name:
            raise typer.BadParameter(
                f"expected NAME=VALUE, got {text[:50]!r}", param_hint="--param"
            )
        pairs.append((name, value))
    return pairs


def _expiry(expires_in: int | None) -> int | None:
    return None if expires_in is None else int(time.time()) + expires_in


def _query(pairs: list[tuple[str, str]]) -> str:
    return "&".join(f"{quote(name, safe='')}={quote(value, safe='')}" for name, value in pairs)


def _active_secrets(key_prefix: str) -> Any:
    from tracker.errors import NotFound
    from tracker.registry.tenants import load_tenant_secrets

    with opened_registry() as registry:
        for tenant in load_tenant_secrets(registry):
            if tenant.key_prefix == key_prefix:
                return tenant
    raise NotFound(f"tenant {key_prefix[:50]!r} not found")


def _emit_url(url: str, as_json: bool, **fields: Any) -> None:
    if as_json:
        typer.echo(json.dumps({"url": url, **fields}))
    else:
        typer.echo(url)


@urls_app.command("sign")
def sign(
    tenant: str = typer.Option(
        ..., "--tenant", help="Key prefix of the tenant whose newest secret signs."
    ),
    destination: str = typer.Argument(..., help="http(s) URL the click redirects to."),
    params: list[str] = PARAM_OPTION,
    signed: list[str] = typer.Option(
        None, "--signed-param", help="Name of a --param the signature covers; repeatable."
    ),
    expires_in: int = typer.Option(
        None, "--expires-in", min=1, help="Seconds until the link stops working."
    ),
    base_url: str = BASE_URL_OPTION,
    as_json: bool = JSON_OPTION,
) -> None:
    """Print a signed click URL (`/t?url=...&sig=...`) for the tenant.

    Example: tracker urls sign https://shop.example/landing --tenant acme -p sub1=google --signed-param sub1 --expires-in 86400
    """
    from tracker._core import sign_click
    from tracker.registry.tracking_urls import validate_destination

    validate_destination(destination)
    pairs = _parse_params(params)
    covered_names = list(signed or ())
    covered = []
    for name in covered_names:
        matches = [pair for pair in pairs if pair[0] == name]
        if len(matches) != 1:
            raise typer.BadParameter(
                f"{name!r} must be given once with --param", param_hint="--signed-param"
            )
        covered.append(matches[0])
    secrets = _active_secrets(tenant)
    expires_at = _expiry(expires_in)
    # hmac_secrets is newest first.
    sig = sign_click(
        secrets.hmac_secrets[0],
        destination,
        key_prefix=tenant,
        params=covered,
        expires_at=expires_at,
    )

    query = [("url", destination), ("sig", sig)]
    if expires_at is not None:
        query.append(("exp", str(expires_at)))
    if covered_names:
        query.append(("sp", ",".join(covered_names)))
    query.extend(pairs)
    _emit_url(
        f"{base_url.rstrip('/')}/t?{_query(query)}",
        as_json,
        key_prefix=tenant,
        expires_at=expires_at,
    )


@urls_app.command("encrypt")
def encrypt(
    tenant: str = typer.Option(
        ..., "--tenant", help="Key prefix of the tenant whose newest AES key encrypts."
    ),
    destination: str = typer.Argument(..., help="http(s) URL the click redirects to."),
    sealed: list[str] = typer.Option(
        None, "--sealed-param", help="NAME=VALUE hidden inside the blob; repeatable."
    ),
    params: list[str] = PARAM_OPTION,
    expires_in: int = typer.Option(
        None, "--expires-in", min=1, help="Seconds until the link stops working."
    ),
    base_url: str = BASE_URL_OPTION,
    as_json: bool = JSON_OPTION,
) -> None:
    """Print an encrypted click URL (`/t?d=...`) that hides the destination.

    Example: tracker urls encrypt https://shop.example/landing --tenant acme --sealed-param offer=42
    """
    from tracker._core import encrypt_destination
    from tracker.registry.tracking_urls import validate_destination

    validate_destination(destination)
    secrets = _active_secrets(tenant)
    key_id = max(secrets.aes_keys)
    expires_at = _expiry(expires_in)
    blob = encrypt_destination(
        secrets.aes_keys[key_id],
        key_id,
        destination,
        key_prefix=tenant,
        params=_parse_params(sealed),
        expires_at=expires_at,
    )
    query = [("d", blob), *_parse_params(params)]
    _emit_url(
        f"{base_url.rstrip('/')}/t?{_query(query)}",
        as_json,
        key_prefix=tenant,
        key_id=key_id,
        expires_at=expires_at,
    )


def _link_dict(link: Any) -> dict[str, Any]:
    return {
        "tu_id": link.tu_id,
        "key_prefix": link.key_prefix,
        "destination": link.destination,
        "name": link.name,
        "params": link.params,
        "status": link.status,
        "created_at": link.created_at,
        "updated_at": link.updated_at,
    }


def _print_link(link: Any, as_json: bool, base_url: str | None = None) -> None:
    document = _link_dict(link)
    if base_url is not None:
        document["url"] = f"{base_url.rstrip('/')}/t/{link.tu_id}"
    if as_json:
        typer.echo(json.dumps(document))
        return
    for field, value in document.items():
        typer.echo(f"{field}: {value}")


@urls_app.command("create")
def create(
    tenant: str = typer.Option(
        ..., "--tenant", help="Key prefix of the tenant that owns the link."
    ),
    destination: str = typer.Argument(..., help="http(s) URL the short link redirects to."),
    name: str = typer.Option("", "--name", help="Label shown in lists."),
    params: list[str] = PARAM_OPTION,
    base_url: str = BASE_URL_OPTION,
    as_json: bool = JSON_OPTION,
) -> None:
    """Create a short link `/t/<tu_id>`; --param values are recorded with every click.

    Example: tracker urls create https://shop.example/spring --tenant acme --name spring-sale
    """
    from tracker.registry.tracking_urls import create_tracking_url

    with opened_registry() as registry:
        link = create_tracking_url(
            registry, tenant, destination, name=name, params=dict(_parse_params(params))
        )
    _print_link(link, as_json, base_url)


@urls_app.command("rotate")
def rotate(
    tu_id: str = typer.Argument(..., help="Id of the short link (tu_...)."),
    destination: str = typer.Argument(..., help="New http(s) destination."),
    as_json: bool = JSON_OPTION,
) -> None:
    """Point a short link at a new destination; links already handed out follow it.

    Example: tracker urls rotate tu_01a2... https://shop.example/summer
    """
    from tracker.registry.tracking_urls import rotate_destination

    with opened_registry() as registry:
        _print_link(rotate_destination(registry, tu_id, destination), as_json)


@urls_app.command("disable")
def disable(
    tu_id: str = typer.Argument(..., help="Id of the short link (tu_...)."),
    as_json: bool = JSON_OPTION,
) -> None:
    """Disable a short link: clicks on it get 410 Gone.

    Example: tracker urls disable tu_01a2...
    """
    from tracker.registry.tracking_urls import disable_tracking_url

    with opened_registry() as registry:
        _print_link(disable_tracking_url(registry, tu_id), as_json)


@urls_app.command("enable")
def enable(
    tu_id: str = typer.Argument(..., help="Id of the short link (tu_...)."),
    as_json: bool = JSON_OPTION,
) -> None:
    """Enable a disabled short link.

    Example: tracker urls enable tu_01a2...
    """
    from tracker.registry.tracking_urls import enable_tracking_url

    with opened_registry() as registry:
        _print_link(enable_tracking_url(registry, tu_id), as_json)


@urls_app.command("list")
def list_command(
    tenant: str = typer.Option(None, "--tenant", help="Only links of this tenant."),
    as_json: bool = JSON_OPTION,
) -> None:
    """List short links, newest first.

    Example: tracker urls list --tenant acme --json
    """
    from tracker.registry.tracking_urls import list_tracking_urls

    with opened_registry() as registry:
        links = list_tracking_urls(registry, key_prefix=tenant)
    if as_json:
        typer.echo(json.dumps([_link_dict(link) for link in links]))
        return
    for link in links:
        typer.echo(f"{link.tu_id}\t{link.key_prefix}\t{link.status}\t{link.destination}")
