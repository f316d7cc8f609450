"""The `tracker keys` commands: create, list and revoke API keys in the registry."""

from __future__ import annotations

import json

import typer

from tracker.cli.registry import opened_registry

__all__ = ["keys_app"]

keys_app = typer.Typer(help="Create, list and revoke API keys.", no_args_is_help=True)


def _usage_error(option: str, message: str) -> typer.Exit:
    """Print a usage error naming the option and return the Exit (status 2) to raise."""
    typer.echo(f"error: {option}: {message}", err=True)
    return typer.Exit(2)


@keys_app.command("create")
def create(
    admin: bool = typer.Option(
        False, "--admin", help="Create an admin key, which manages tenants and has no tenant."
    ),
    tenant: str = typer.Option(
        None, "--tenant", help="Key prefix of the tenant that owns the key."
    ),
    scope: str = typer.Option("read", "--scope", help="read or write; ignored with --admin."),
    name: str = typer.Option("", "--name", help="Label shown in key lists."),
) -> None:
    """Create a key and print it once as JSON; the registry keeps only its hash.

    Example: tracker keys create --tenant acme --scope write --name backend
    """
    from tracker.registry.api_keys import create_api_key

    if admin == (tenant is not None):
        raise _usage_error("--admin/--tenant", "pass either --admin or --tenant PREFIX")
    if not admin and scope not in ("read", "write"):
        raise _usage_error("--scope", f"expected read or write, got {scope[:20]!r}")
    try:
        with opened_registry() as registry:
            created = create_api_key(
                registry,
                key_prefix=None if admin else tenant,
                scope="admin" if admin else scope,
                name=name,
            )
    except ValueError as error:
        raise _usage_error("--tenant", str(error)) from None
    typer.echo(
        json.dumps(
            {
                "key_id": created.api_key.key_id,
                "scope": created.api_key.scope,
                "api_key": created.raw_key,
            }
        )
    )


@keys_app.command("list")
def list_keys(
    tenant: str = typer.Option(
        None, "--tenant", help="Only keys of this tenant; all keys without it."
    ),
) -> None:
    """Print keys as JSON lines, never their secrets.

    Example: tracker keys list --tenant acme
    """
    from tracker.registry.api_keys import list_api_keys

    with opened_registry() as registry:
        for key in list_api_keys(registry, tenant):
            typer.echo(
                json.dumps(
                    {
                        "key_id": key.key_id,
                        "key_prefix": key.key_prefix,
                        "scope": key.scope,
                        "name": key.name,
                        "created_at": key.created_at,
                        "revoked_at": key.revoked_at,
                    }
                )
            )


@keys_app.command("revoke")
def revoke(
    key_id: str = typer.Argument(..., help="The key_id shown by `tracker keys list`."),
) -> None:
    """Revoke a key; requests with it get 401 (within 10 seconds on other servers).

    Example: tracker keys revoke 3b9313b526cd
    """
    from tracker.registry.api_keys import revoke_api_key

    with opened_registry() as registry:
        revoked = revoke_api_key(registry, key_id)
    typer.echo(json.dumps({"key_id": revoked.key_id, "revoked_at": revoked.revoked_at}))
