"""The `tracker doctor` command: check configuration and every configured backend."""

from __future__ import annotations

import json

import typer

from tracker.settings import load_env

__all__ = ["doctor"]

_MARKS = {"ok": "ok  ", "warn": "warn", "fail": "FAIL"}


def doctor(
    as_json: bool = typer.Option(False, "--json", help="Print the findings as one JSON array."),
) -> None:
    """Check settings, the registry, the broker, the hot tier, the archive, the warm store
    and the ports; exit 1 if any check fails.

    Example: TRACKER_DATA_DIR=./.tracker tracker doctor --json
    """
    from tracker.doctor import run_checks

    findings = run_checks(load_env())
    if as_json:
        print(json.dumps([finding.as_dict() for finding in findings], indent=2))
    else:
        for finding in findings:
            print(f"{_MARKS[finding.status]}  {finding.check:<24} {finding.detail}")
            if finding.fix:
                print(f"      {'':<24} fix: {finding.fix}")
    if any(finding.status == "fail" for finding in findings):
        raise typer.Exit(1)
