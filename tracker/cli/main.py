"""Entry point of the `tracker` command: registers every command group."""

from __future__ import annotations

import sys

import click
import typer

from tracker.errors import TrackerError

app = typer.Typer(
    name="tracker",
    help="Multi-tenant event tracking platform: ingestion, consumers, analytics.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)

# Each command group lives in its own module and registers itself on `app` here.
# (Keep this list sorted.)
from tracker.cli.api import api  # noqa: E402

app.command("api")(api)

from tracker.cli.consume import consume  # noqa: E402

app.command("consume")(consume)

from tracker.cli.demo import demo  # noqa: E402

app.command("demo")(demo)

from tracker.cli.doctor import doctor  # noqa: E402

app.command("doctor")(doctor)

from tracker.cli.keys import keys_app  # noqa: E402

app.add_typer(keys_app, name="keys")

from tracker.cli.mcp import mcp  # noqa: E402

app.command("mcp")(mcp)

from tracker.cli.replay import replay  # noqa: E402

app.command("replay")(replay)

from tracker.cli.rules import rules_app  # noqa: E402

app.add_typer(rules_app, name="rules")

from tracker.cli.serve import serve  # noqa: E402

app.command("serve")(serve)

from tracker.cli.sse import sse  # noqa: E402

app.command("sse")(sse)

from tracker.cli.tenants import tenants_app  # noqa: E402

app.add_typer(tenants_app, name="tenants")

from tracker.cli.up import up  # noqa: E402

app.command("up")(up)

from tracker.cli.urls import urls_app  # noqa: E402

app.add_typer(urls_app, name="urls")

from tracker.cli.webhooks import webhooks_app  # noqa: E402

app.add_typer(webhooks_app, name="webhooks")


def main() -> None:
    """Run the CLI; the product's own errors go to stderr with exit code 1."""
    try:
        # Without standalone mode click returns the code of a typer.Exit instead of exiting.
        code = app(standalone_mode=False)
    except TrackerError as error:
        print(f"error: {error}", file=sys.stderr)
        raise SystemExit(1) from None
    except typer.Abort:
        print("Aborted.", file=sys.stderr)
        raise SystemExit(130) from None
    except typer.Exit as done:
        raise SystemExit(done.exit_code) from None
    except (click.ClickException, typer.TyperException) as error:
        # typer 0.29 raises usage errors from its bundled copy of click, which subclass
        # TyperException rather than click.ClickException; both carry show() and exit_code.
        if hasattr(error, "show"):
            error.show()
        else:
            print(f"error: {error}", file=sys.stderr)
        raise SystemExit(getattr(error, "exit_code", 2)) from None
    if isinstance(code, int) and code != 0:
        raise SystemExit(code)


if __name__ == "__main__":
    main()
