"""The `tracker up` command: the whole platform on one machine with embedded defaults."""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from pathlib import Path

import typer

from tracker.supervisor import Component, ComponentState, Supervisor, check_ports_free

__all__ = ["up"]

CONSUMERS = (
    "event-filter",
    "stats",
    "archiver",
    "archiver-filtered",
    "webhooks",
    "warm-aggregator",
)


def _components(port: int, api_port: int, sse_port: int, with_hot: bool) -> list[Component]:
    consumers = [*CONSUMERS, "hot-writer"] if with_hot else list(CONSUMERS)
    components = [
        Component("ingest", ("serve",), port=port, health_path="/health", stop_order=10),
        Component("api", ("api",), port=api_port, health_path="/api/health", stop_order=20),
        Component("sse", ("sse",), port=sse_port, health_path="/health", stop_order=20),
    ]
    components += [Component(name, ("consume", name), stop_order=30) for name in consumers]
    return components


def _print_status(state: ComponentState, message: str, as_json: bool) -> None:
    if as_json:
        print(json.dumps({**state.as_dict(), "message": message}), flush=True)
        return
    port = f":{state.component.port}" if state.component.port else ""
    pid = state.pid if state.pid is not None else "-"
    print(
        f"  {state.component.name:<18} pid {pid!s:<8} {port:<7} {state.state:<9} "
        f"restarts {state.restarts}  {message}",
        flush=True,
    )


def up(
    data_dir: Path = typer.Option(
        Path(".tracker"),
        "--data-dir",
        envvar="TRACKER_DATA_DIR",
        help="Directory for all local state.",
    ),
    host: str = typer.Option(
        "127.0.0.1", "--host", envvar="HOST", help="Address the HTTP servers bind."
    ),
    port: int = typer.Option(3030, "--port", envvar="PORT", help="Ingest port."),
    api_port: int = typer.Option(8787, "--api-port", envvar="API_PORT", help="Platform API port."),
    sse_port: int = typer.Option(3031, "--sse-port", envvar="SSE_PORT", help="SSE gateway port."),
    demo_tenant: bool = typer.Option(
        True, "--demo-tenant/--no-demo-tenant", help="Create a demo tenant on first run."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print status changes as JSON lines."),
) -> None:
    """Run ingest, the consumers, the API and the SSE gateway as supervised processes.

    Example: tracker up --data-dir ./.tracker --port 3030

    Ctrl-C or SIGTERM stops everything in order: ingest drains into the durable local log
    first, then the API, the SSE gateway and the consumers finish their batch and commit.
    """
    from tracker.bootstrap import ensure_demo_tenant, render_welcome

    data_dir = data_dir.resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    check_ports_free(host, {"ingest": port, "api": api_port, "sse": sse_port})

    env = dict(os.environ)
    env.update(
        {
            "TRACKER_DATA_DIR": str(data_dir),
            "HOST": host,
            "API_HOST": host,
            "SSE_HOST": host,
            "PORT": str(port),
            "API_PORT": str(api_port),
            "SSE_PORT": str(sse_port),
            "PYTHONUNBUFFERED": "1",
        }
    )
    env.setdefault("LOG_FORMAT", "json")
    # The dashboard served by the API opens EventSource streams on the SSE port.
    env.setdefault("SSE_ALLOWED_ORIGINS", f"http://{host}:{api_port}")

    if demo_tenant:
        welcome = ensure_demo_tenant(data_dir, env)
        if welcome is not None and not as_json:
            print(
                render_welcome(welcome, host=host, port=port, api_port=api_port, sse_port=sse_port)
            )
        elif welcome is not None:
            print(json.dumps({"demo_tenant": welcome.as_dict()}), flush=True)

    components = _components(port, api_port, sse_port, with_hot=bool(env.get("HOT_DSN")))
    supervisor = Supervisor(
        components,
        env=env,
        log_dir=data_dir / "logs",
        report=lambda state, message: _print_status(state, message, as_json),
    )

    stop_requested = False

    def request_stop(signum: int, _frame: object) -> None:
        nonlocal stop_requested
        stop_requested = True

    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGTERM, request_stop)

    if not as_json:
        print(f"Starting {len(components)} components; logs in {data_dir / 'logs'}", flush=True)
    all_ready = supervisor.start()
    if not as_json:
        word = (
            "All components are ready."
            if all_ready
            else "Some components are not ready; see their logs."
        )
        print(word, "Press Ctrl-C to stop.", flush=True)

    while not stop_requested:
        supervisor.check()
        time.sleep(0.5)

    if not as_json:
        print("Stopping: ingest first, then the API, SSE and consumers.", flush=True)
    codes = supervisor.stop()
    failed = {name: code for name, code in codes.items() if code not in (0, None)}
    if failed:
        print(f"error: components exited with non-zero codes: {failed}", file=sys.stderr)
        raise typer.Exit(1)
