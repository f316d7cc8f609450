"""`tracker tenants`: create tenants and manage their plan, status, secrets and keys."""

from __future__ import annotations

import json
from typing import Any

import typer

from tracker.cli.registry import opened_registry

__all__ = ["tenants_app"]

tenants_app = typer.Typer(
    help="Create tenants and manage their plan, status, secrets and keys.", no_args_is_help=True
)

JSON_OPTION = typer.Option(False, "--json", help="Print JSON instead of text.")


def _tenant_dict(tenant: Any) -> dict[str, Any]:
    return {
        "key_prefix": tenant.key_prefix,
        "name": tenant.name,
        "plan": tenant.plan,
        "status": tenant.status,
        "hmac_key_ids": list(tenant.hmac_key_ids),
        "aes_key_ids": list(tenant.aes_key_ids),
        "created_at": tenant.created_at,
        "updated_at": tenant.updated_at,
    }


def _print_tenant(tenant: Any, as_json: bool) -> None:
    document = _tenant_dict(tenant)
    if as_json:
        typer.echo(json.dumps(document))
        return
    for name, value in document.items():
        typer.echo(f"{name}: {value}")


@tenants_app.command("create")
def create(
    key_prefix: str = typer.Option(
        None, "--key-prefix", help="1 to 32 characters of \\[a-z0-9]; random when omitted."
    ),
    name: str = typer.Option("", "--name", help="Label shown in lists."),
    plan: str = typer.Option("free", "--plan", help="free or pro."),
    as_json: bool = JSON_OPTION,
) -> None:
    """Create a tenant and print its HMAC secret and AES key once; they are not shown again.

    Example: tracker tenants create --key-prefix acme --name 'Acme Inc' --plan pro --json
    """
    from tracker.registry.tenants import create_tenant

    with opened_registry() as registry:
        created = create_tenant(registry, key_prefix=key_prefix, name=name, plan=plan)
    document = {
        "key_prefix": created.key_prefix,
        "hmac_secret": created.hmac_secret.hex(),
        "aes_key": created.aes_key.hex(),
        "aes_key_id": created.aes_key_id,
    }
    if as_json:
        typer.echo(json.dumps(document))
        return
    for field, value in document.items():
        typer.echo(f"{field}: {value}")
    typer.echo("Store the secret and key now: the registry never prints them again.")


@tenants_app.command("list")
def list_command(as_json: bool = JSON_OPTION) -> None:
    """List every tenant with its plan, status and active key ids.

    Example: tracker tenants list --json
    """
    from tracker.registry.tenants import list_tenants

    with opened_registry() as registry:
        tenants = list_tenants(registry)
    if as_json:
        typer.echo(json.dumps([_tenant_dict(tenant) for tenant in tenants]))
        return
    for tenant in tenants:
        typer.echo(f"{tenant.key_prefix}\t{tenant.plan}\t{tenant.status}\t{tenant.name}")


@tenants_app.command("show")
def show(
    key_prefix: str = typer.Argument(..., help="The tenant's key prefix."),
    as_json: bool = JSON_OPTION,
) -> None:
    """Show one tenant (never its secrets).

    Example: tracker tenants show acme
    """
    from tracker.registry.tenants import get_tenant

    with opened_registry() as registry:
        _print_tenant(get_tenant(registry, key_prefix), as_json)


def _print_rotated(rotated: Any, as_json: bool) -> None:
    document = {
        "key_prefix": rotated.key_prefix,
        "kind": rotated.kind,
        "key_id": rotated.key_id,
        "secret": rotated.secret.hex(),
    }
    if as_json:
        typer.echo(json.dumps(document))
        return
    for field, value in document.items():
        typer.echo(f"{field}: {value}")
    typer.echo("Older secrets stay active until retired with `tracker tenants retire-secret`.")


@tenants_app.command("rotate-secret")
def rotate_secret(
    key_prefix: str = typer.Argument(..., help="The tenant's key prefix."),
    as_json: bool = JSON_OPTION,
) -> None:
    """Add a new HMAC signing secret and print it once; older secrets keep verifying.

    Example: tracker tenants rotate-secret acme --json
    """
    from tracker.registry.tenants import rotate_hmac_secret

    with opened_registry() as registry:
        _print_rotated(rotate_hmac_secret(registry, key_prefix), as_json)


@tenants_app.command("rotate-key")
def rotate_key(
    key_prefix: str = typer.Argument(..., help="The tenant's key prefix."),
    as_json: bool = JSON_OPTION,
) -> None:
    """Add a new AES-256 key under the next key id and print it once; older keys keep decrypting.

    Example: tracker tenants rotate-key acme --json
    """
    from tracker.registry.tenants import rotate_aes_key

    with opened_registry() as registry:
        _print_rotated(rotate_aes_key(registry, key_prefix), as_json)


@tenants_app.command("retire-secret")
def retire(
    key_prefix: str = typer.Argument(..., help="The tenant's key prefix."),
    kind: str = typer.Option(..., "--kind", help="hmac (signing secret) or aes (encryption key)."),
    key_id: int = typer.Option(
        ..., "--key-id", help="Id of the secret or key, as shown by `tenants show`."
    ),
    as_json: bool = JSON_OPTION,
) -> None:
    """Retire one secret or key: links made with it stop working.

    Example: tracker tenants retire-secret acme --kind hmac --key-id 0
    """
    from tracker.registry.tenants import get_tenant, retire_secret

    with opened_registry() as registry:
        retire_secret(registry, key_prefix, kind, key_id)
        _print_tenant(get_tenant(registry, key_prefix), as_json)


@tenants_app.command("set-plan")
def set_plan_command(
    key_prefix: str = typer.Argument(..., help="The tenant's key prefix."),
    plan: str = typer.Argument(..., help="free or pro."),
    as_json: bool = JSON_OPTION,
) -> None:
    """Change the tenant's plan, which picks the query tier.

    Example: tracker tenants set-plan acme pro
    """
    from tracker.registry.tenants import get_tenant, set_plan

    with opened_registry() as registry:
        set_plan(registry, key_prefix, plan)
        _print_tenant(get_tenant(registry, key_prefix), as_json)


@tenants_app.command("disable")
def disable(
    key_prefix: str = typer.Argument(..., help="The tenant's key prefix."),
    as_json: bool = JSON_OPTION,
) -> None:
    """Disable the tenant: ingest rejects its events from the next registry refresh.

    Example: tracker tenants disable acme
    """
    from tracker.registry.tenants import disable_tenant, get_tenant

    with opened_registry() as registry:
        disable_tenant(registry, key_prefix)
        _print_tenant(get_tenant(registry, key_prefix), as_json)


@tenants_app.command("enable")
def enable(
    key_prefix: str = typer.Argument(..., help="The tenant's key prefix."),
    as_json: bool = JSON_OPTION,
) -> None:
    """Enable a disabled tenant.

    Example: tracker tenants enable acme
    """
    from tracker.registry.tenants import enable_tenant, get_tenant

    with opened_registry() as registry:
        enable_tenant(registry, key_prefix)
        _print_tenant(get_tenant(registry, key_prefix), as_json)
