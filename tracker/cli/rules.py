"""`tracker rules`: add, list and delete the event filter's per-tenant rules and limits."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import orjson
import typer

from tracker.cli.registry import opened_registry

if TYPE_CHECKING:
    from tracker.registry.rules import Rule

__all__ = ["rules_app"]

rules_app = typer.Typer(
    help="Manage the event filter's per-tenant rules and rate limits.", no_args_is_help=True
)

JSON_OPTION = typer.Option(False, "--json", help="Print JSON instead of text.")


def _rule_document(rule: Rule) -> dict[str, object]:
    return {
        "rule_id": rule.rule_id,
        "key_prefix": rule.key_prefix,
        "name": rule.name,
        "enabled": rule.enabled,
        "definition": rule.definition,
    }


@rules_app.command("add")
def add(
    key_prefix: str = typer.Argument(..., help="Tenant the rule applies to."),
    definition: str = typer.Argument(
        ..., help="Rule as JSON, or @PATH of a file that contains it."
    ),
    name: str = typer.Option("", "--name", help="Label shown in lists."),
    as_json: bool = JSON_OPTION,
) -> None:
    """Validate and store a rule; a bad field, operator, regex or CIDR is rejected with its path.

    Example: tracker rules add acme '{"match": "all", "action": "drop", "conditions":
    [{"field": "params.sub1", "op": "in", "value": ["spam", "test"]}]}'
    """
    from tracker.registry.rules import add_rule

    text = (
        Path(definition[1:]).read_text(encoding="utf-8")
        if definition.startswith("@")
        else definition
    )
    with opened_registry() as registry:
        rule = add_rule(registry, key_prefix, text, name=name)
    if as_json:
        typer.echo(orjson.dumps(_rule_document(rule)).decode())
    else:
        typer.echo(f"added rule {rule.rule_id} for {rule.key_prefix}")


@rules_app.command("list")
def list_command(
    key_prefix: str = typer.Argument(
        None, help="Only this tenant's rules; all tenants when omitted."
    ),
    as_json: bool = JSON_OPTION,
) -> None:
    """Print rules in id order, which is the order the filter applies them.

    Example: tracker rules list acme --json
    """
    from tracker.registry.rules import list_rules

    with opened_registry() as registry:
        rules = list_rules(registry, key_prefix)
    if as_json:
        typer.echo(orjson.dumps([_rule_document(rule) for rule in rules]).decode())
        return
    for rule in rules:
        state = "enabled" if rule.enabled else "disabled"
        typer.echo(
            f"{rule.rule_id}\t{rule.key_prefix}\t{state}\t{rule.name}\t{orjson.dumps(rule.definition).decode()}"
        )


@rules_app.command("delete")
def delete(
    rule_id: int = typer.Argument(..., help="Id printed by `tracker rules add` or `list`."),
) -> None:
    """Delete a rule; the filter stops applying it at its next reload."""
    from tracker.registry.rules import delete_rule

    with opened_registry() as registry:
        delete_rule(registry, rule_id)
    typer.echo(f"deleted rule {rule_id}")


@rules_app.command("limits")
def limits(
    key_prefix: str = typer.Argument(..., help="Tenant whose limits to set."),
    tenant_limit: int = typer.Option(
        None, "--tenant", min=0, help="Events per filter window for the tenant."
    ),
    ip_limit: int = typer.Option(
        None, "--ip", min=0, help="Events per filter window for one IP of the tenant."
    ),
) -> None:
    """Override the tenant's rate limits; an omitted option restores the default."""
    from tracker.registry.rules import set_limits

    with opened_registry() as registry:
        set_limits(registry, key_prefix, tenant_limit=tenant_limit, ip_limit=ip_limit)
    shown = ["default" if value is None else str(value) for value in (tenant_limit, ip_limit)]
    typer.echo(f"limits of {key_prefix}: tenant {shown[0]}, ip {shown[1]}")
