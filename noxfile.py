"""Development sessions: tests, lint, bench and wheel, each in its own virtualenv."""

from __future__ import annotations

import datetime
import os
import subprocess
from pathlib import Path

import nox

nox.options.sessions = ["tests"]
nox.options.reuse_existing_virtualenvs = False
nox.options.default_venv_backend = "venv"

ROOT = Path(__file__).parent
PYTHON = "3.11"


def _install_platform(session: nox.Session, extras: str = "test,mcp") -> None:
    """Build the Rust extension in release mode and install both distributions editable."""
    session.install("maturin>=1.7,<2")
    session.run(
        "maturin",
        "develop",
        "--release",
        "--extras",
        extras,
        env={"VIRTUAL_ENV": session.virtualenv.location},
    )
    session.install("-e", "./sdk[encrypted]")


@nox.session(python=PYTHON)
def tests(session: nox.Session) -> None:
    """Build the extension, then run the whole pytest suite and `cargo test`."""
    _install_platform(session)
    session.run("cargo", "test", "--workspace", "--quiet", external=True)
    args = session.posargs or ["tests", "sdk/tests", "-p", "no:cacheprovider"]
    session.run("pytest", *args)


@nox.session(python=PYTHON)
def lint(session: nox.Session) -> None:
    """ruff, ruff format --check, cargo fmt --check and cargo clippy -D warnings."""
    session.install("ruff")
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")
    session.run("cargo", "fmt", "--all", "--check", external=True)
    session.run(
        "cargo", "clippy", "--workspace", "--all-targets", "--", "-D", "warnings", external=True
    )


@nox.session(python=PYTHON)
def bench(session: nox.Session) -> None:
    """Run every benchmark in bench/ and write bench/results/<date>-<commit>.json."""
    _install_platform(session, extras="test,mcp,bench")
    commit = (
        subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=False,
            cwd=ROOT,
        ).stdout.strip()
        or "nogit"
    )
    stamp = datetime.date.today().isoformat()
    out = ROOT / "bench" / "results" / f"{stamp}-{commit}.json"
    args = session.posargs or []
    session.run(
        "pytest",
        "bench",
        "-p",
        "no:cacheprovider",
        # Every file in bench/ runs: the load, archiver and consumer benches measure with
        # their own clocks, so --benchmark-only would skip them.
        "-o",
        "timeout=3600",
        f"--benchmark-json={out}",
        "--benchmark-storage=bench/results/.baselines",
        "--benchmark-autosave",
        *args,
    )
    session.run("python", "bench/summarize.py", str(out))


@nox.session(python=PYTHON)
def wheel(session: nox.Session) -> None:
    """Build wheels of both distributions and install them in a venv without Rust on PATH."""
    session.install("maturin>=1.7,<2", "build")
    dist = ROOT / "dist"
    session.run("maturin", "build", "--release", "--out", str(dist))
    session.run("python", "-m", "build", "--wheel", "--outdir", str(dist), "sdk")
    check = session.virtualenv.location + "-check"
    session.run("python", "-m", "venv", "--clear", check)
    env = {
        "PATH": f"{check}/bin:/usr/bin:/bin",
        "CARGO_HOME": "/nonexistent",
        "RUSTUP_HOME": "/nonexistent",
    }
    wheels = sorted(str(p) for p in dist.glob("*.whl"))
    session.run(f"{check}/bin/pip", "install", *wheels, env=env, external=True)
    session.run(
        f"{check}/bin/python",
        "-c",
        "import tracker._core, tracker_sdk; print('wheel ok', tracker._core.__version__)",
        env=env,
        external=True,
    )
    if os.environ.get("CI"):
        session.log("built: " + ", ".join(Path(w).name for w in wheels))
