"""The `tracker webhooks` commands: manage endpoints, list deliveries and dead letters, replay."""

from __future__ import annotations

import typer

from tracker.cli.registry import opened_registry

__all__ = ["webhooks_app"]

webhooks_app = typer.Typer(
    help="Manage webhook endpoints and their deliveries.", no_args_is_help=True
)


def _print(document: object) -> None:
    import orjson

    typer.echo(orjson.dumps(document, option=orjson.OPT_INDENT_2).decode())


def _usage_error(option: str, message: str) -> typer.Exit:
    typer.echo(f"error: {option}: {message}", err=True)
    return typer.Exit(2)


@webhooks_app.command("create")
def create(
    tenant: str = typer.Option(
        ..., "--tenant", help="Key prefix of the tenant that owns the endpoint."
    ),
    url: str = typer.Option(..., "--url", help="http(s) URL that receives the signed POSTs."),
    event_type: list[str] = typer.Option(
        [], "--event-type", help="Deliver only this event type; repeat for several (default: all)."
    ),
    param: list[str] = typer.Option(
        [],
        "--param",
        help="Deliver only events whose param KEY equals VALUE, given as KEY=VALUE; repeatable.",
    ),
    description: str = typer.Option("", "--description", help="Label shown in endpoint lists."),
) -> None:
    """Register an endpoint and print it with its signing secret, which is shown only this once.

    Example: tracker webhooks create --tenant acme --url https://hooks.example/tracker --event-type postback
    """
    from tracker.consumers.ssrf import NetworkPolicy
    from tracker.registry.webhooks import create_endpoint
    from tracker.settings import load_env

    filters: dict[str, str] = {}
    for item in param:
        key, separator, value = item.partition("=")
        if not separator or not key:
            raise _usage_error("--param", f"expected KEY=VALUE, got {item[:50]!r}")
        filters[key] = value
    try:
        with opened_registry() as registry:
            created = create_endpoint(
                registry,
                key_prefix=tenant,
                url=url,
                event_types=event_type,
                param_filters=filters,
                description=description,
                policy=NetworkPolicy.from_env(load_env()),
            )
    except ValueError as error:
        raise _usage_error(
            "--" + str(error).split(":", 1)[0].replace("_", "-"), str(error)
        ) from None
    _print({**created.endpoint.to_dict(), "secret": created.secret})


@webhooks_app.command("list")
def list_command(
    tenant: str = typer.Option(
        None, "--tenant", help="Only this tenant's endpoints (default: all)."
    ),
) -> None:
    """Print endpoints as JSON, without their secrets.

    Example: tracker webhooks list --tenant acme
    """
    from tracker.registry.webhooks import list_endpoints

    with opened_registry() as registry:
        _print([endpoint.to_dict() for endpoint in list_endpoints(registry, tenant)])


@webhooks_app.command("delete")
def delete(endpoint_id: str = typer.Argument(..., help="Id of the endpoint, wh_...")) -> None:
    """Delete an endpoint and its delivery history.

    Example: tracker webhooks delete wh_01a2...
    """
    from tracker.registry.webhooks import delete_endpoint

    with opened_registry() as registry:
        delete_endpoint(registry, endpoint_id)
    typer.echo(f"deleted {endpoint_id}")


@webhooks_app.command("deliveries")
def deliveries(
    tenant: str = typer.Option(None, "--tenant", help="Only this tenant's deliveries."),
    endpoint_id: str = typer.Option(None, "--endpoint", help="Only this endpoint's deliveries."),
    status: str = typer.Option(None, "--status", help="pending, delivering, delivered or dead."),
    limit: int = typer.Option(
        100, "--limit", min=1, max=1000, help="Most deliveries printed, newest first."
    ),
) -> None:
    """Print deliveries as JSON, newest first.

    Example: tracker webhooks deliveries --endpoint wh_01a2... --status dead
    """
    from tracker.registry.webhooks import list_deliveries

    try:
        with opened_registry() as registry:
            rows = list_deliveries(
                registry, key_prefix=tenant, endpoint_id=endpoint_id, status=status, limit=limit
            )  # type: ignore[arg-type]
    except ValueError as error:
        raise _usage_error("--status", str(error)) from None
    _print([row.to_dict() for row in rows])


@webhooks_app.command("dead-letters")
def dead_letters(
    tenant: str = typer.Option(None, "--tenant", help="Only this tenant's dead letters."),
    limit: int = typer.Option(
        100, "--limit", min=1, max=1000, help="Most deliveries printed, newest first."
    ),
) -> None:
    """Print deliveries that were given up on, with their last error.

    Example: tracker webhooks dead-letters --tenant acme
    """
    from tracker.registry.webhooks import list_dead_letters

    with opened_registry() as registry:
        _print(
            [row.to_dict() for row in list_dead_letters(registry, key_prefix=tenant, limit=limit)]
        )


@webhooks_app.command("replay")
def replay_command(
    delivery_id: str = typer.Argument(..., help="Id of a dead or delivered delivery, dlv_..."),
) -> None:
    """Queue a delivery again; the running webhook consumer sends it within its poll interval.

    Example: tracker webhooks replay dlv_01a2...
    """
    from tracker.registry.webhooks import replay

    with opened_registry() as registry:
        _print(replay(registry, delivery_id).to_dict())
