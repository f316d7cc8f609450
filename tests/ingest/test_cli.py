"""`tracker tenants` and `tracker urls` through the CLI entry point, and their links on a server.

Most cases call the entry point in-process, which runs the same code on a real registry file.
One case runs it as a subprocess to check the exit code and stderr end to end.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from contextlib import redirect_stderr, redirect_stdout
from dataclasses import dataclass
from pathlib import Path

import pytest

from tracker.cli.main import main

CLI = [sys.executable, "-c", "from tracker.cli.main import main; main()"]


@dataclass
class Result:
    returncode: int
    stdout: str
    stderr: str


def run_cli(data_dir: Path, *args: str) -> Result:
    """Run `tracker ARGS` in this process against the registry under `data_dir`."""
    overrides = {"TRACKER_DATA_DIR": str(data_dir), "TRACKER_ENV_FILE": str(data_dir / "no.env")}
    saved_env = {name: os.environ.get(name) for name in (*overrides, "REGISTRY_PATH", "TURSO_URL")}
    saved_argv = sys.argv
    stdout, stderr = io.StringIO(), io.StringIO()
    code = 0
    os.environ.update(overrides)
    os.environ.pop("REGISTRY_PATH", None)
    os.environ.pop("TURSO_URL", None)
    sys.argv = ["tracker", *args]
    try:
        with redirect_stdout(stdout), redirect_stderr(stderr):
            try:
                main()
            except SystemExit as exit_request:
                code = exit_request.code if isinstance(exit_request.code, int) else 1
    finally:
        sys.argv = saved_argv
        for name, value in saved_env.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
    return Result(code, stdout.getvalue(), stderr.getvalue())


@pytest.fixture(scope="module")
def cli_data(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("cli")
    created = run_cli(path, "tenants", "create", "--key-prefix", "acme", "--plan", "pro", "--json")
    assert created.returncode == 0, created.stderr
    return path


def test_tenant_create_prints_secrets_once(cli_data):
    shown = run_cli(cli_data, "tenants", "show", "acme", "--json")
    listed = run_cli(cli_data, "tenants", "list", "--json")

    document = json.loads(shown.stdout)
    assert document["plan"] == "pro"
    assert document["hmac_key_ids"] == [0]
    assert "hmac_secret" not in document
    assert [tenant["key_prefix"] for tenant in json.loads(listed.stdout)] == ["acme"]


def test_tenant_rotation_commands(cli_data):
    secret = json.loads(run_cli(cli_data, "tenants", "rotate-secret", "acme", "--json").stdout)
    key = json.loads(run_cli(cli_data, "tenants", "rotate-key", "acme", "--json").stdout)
    retired = run_cli(
        cli_data, "tenants", "retire-secret", "acme", "--kind", "hmac", "--key-id", "0", "--json"
    )

    assert secret["key_id"] == 1
    assert len(bytes.fromhex(secret["secret"])) == 32
    assert key["key_id"] == 1
    assert json.loads(retired.stdout)["hmac_key_ids"] == [1]


def test_tenant_status_and_plan_commands(cli_data):
    run_cli(cli_data, "tenants", "create", "--key-prefix", "temp", "--json")
    disabled = json.loads(run_cli(cli_data, "tenants", "disable", "temp", "--json").stdout)
    enabled = json.loads(run_cli(cli_data, "tenants", "enable", "temp", "--json").stdout)
    planned = json.loads(run_cli(cli_data, "tenants", "set-plan", "temp", "pro", "--json").stdout)
    assert (disabled["status"], enabled["status"], planned["plan"]) == ("disabled", "active", "pro")


@pytest.mark.parametrize(
    "args",
    [
        ("tenants", "show", "nobody"),
        ("tenants", "create", "--key-prefix", "Bad!"),
        ("tenants", "set-plan", "acme", "gold"),
        ("urls", "create", "--tenant", "acme", "javascript:alert(1)"),
        ("urls", "sign", "--tenant", "nobody", "https://a.example/"),
        ("urls", "rotate", "tu_missing", "https://a.example/"),
    ],
)
def test_errors_go_to_stderr_with_nonzero_exit(cli_data, args):
    result = run_cli(cli_data, *args)
    assert result.returncode != 0
    assert result.stderr.startswith("error:") or "Error" in result.stderr
    assert "Traceback" not in result.stderr


def test_subprocess_error_exit_code(cli_data):
    env = {
        "PATH": "/usr/bin:/bin",
        "TRACKER_DATA_DIR": str(cli_data),
        "TRACKER_ENV_FILE": str(cli_data / "no.env"),
    }
    result = subprocess.run(
        [*CLI, "tenants", "show", "nobody"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        cwd=cli_data,
    )
    assert result.returncode == 1
    assert result.stderr == "error: tenant 'nobody' not found\n"
    assert result.stdout == ""


def test_url_commands_manage_short_links(cli_data):
    created = json.loads(
        run_cli(
            cli_data, "urls", "create", "--tenant", "acme", "https://land.example/", "--json"
        ).stdout
    )
    rotated = json.loads(
        run_cli(
            cli_data, "urls", "rotate", created["tu_id"], "https://new.example/", "--json"
        ).stdout
    )
    disabled = json.loads(run_cli(cli_data, "urls", "disable", created["tu_id"], "--json").stdout)
    listed = json.loads(run_cli(cli_data, "urls", "list", "--tenant", "acme", "--json").stdout)

    assert created["url"].endswith("/t/" + created["tu_id"])
    assert rotated["destination"] == "https://new.example/"
    assert disabled["status"] == "disabled"
    assert created["tu_id"] in [link["tu_id"] for link in listed]


def test_signed_and_encrypted_urls_work_on_server(ingest, tmp_path):
    # The CLI signs with the registry of the shared server, so the links verify there.
    base = f"http://127.0.0.1:{ingest.port}"
    env_dir = ingest.data_dir
    signed = run_cli(
        env_dir,
        "urls",
        "sign",
        "--tenant",
        "acme",
        "https://shop.example/x?y=1",
        "-p",
        "sub=a b",
        "--signed-param",
        "sub",
        "--expires-in",
        "600",
        "--base-url",
        base,
    )
    encrypted = run_cli(
        env_dir,
        "urls",
        "encrypt",
        "--tenant",
        "acme",
        "https://hidden.example/",
        "--sealed-param",
        "offer=1",
        "--base-url",
        base,
    )

    assert signed.returncode == 0, signed.stderr
    assert encrypted.returncode == 0, encrypted.stderr
    signed_reply = ingest.get(signed.stdout.strip().removeprefix(base))
    encrypted_reply = ingest.get(encrypted.stdout.strip().removeprefix(base))
    assert signed_reply.status == 307
    assert signed_reply.headers["location"].startswith("https://shop.example/x?y=1&ad_click_id=")
    assert encrypted_reply.status == 307
