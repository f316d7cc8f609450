"""Run every fenced block of docs/onboarding.md, in order, against a live platform.

Block rules, written in the info string after the language:

- `bash`: run with `set -euo pipefail`; exported variables carry over to later blocks.
  `background` runs the block in its own session and stops that session at the end;
  `retry` repeats a failing block for up to RETRY_TIMEOUT_S.
- `python`: saved under its title when the title ends in `.py`, then run.
- `html`: saved under its title and opened in Chromium from a local page server. The
  guide's placeholder address `http://127.0.0.1:3030` is replaced with the live one, as
  the guide instructs readers to do.
- `js`: evaluated in the page the last `html` block opened.

Ports come from free_port(); everything else comes from the guide itself.
"""

from __future__ import annotations

import functools
import os
import re
import shlex
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from tests.conftest import free_port
from tests.sdk_integration.live_platform import LivePlatform

pytestmark = [pytest.mark.browser, pytest.mark.slow]

GUIDE = Path(__file__).resolve().parents[2] / "docs" / "onboarding.md"
PLACEHOLDER_HOST = "http://127.0.0.1:3030"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking"]
BLOCK_TIMEOUT_S = 150.0
# Covers the start-up of `tracker api` and the consumers, which takes minutes on a loaded machine.
RETRY_TIMEOUT_S = 180.0
STOP_TIMEOUT_S = 20.0
# The guide leaves BROKER_PARTITIONS at its default.
DEFAULT_PARTITIONS = 24

_FENCE = re.compile(r"^```(\w+)([^\n]*)\n(.*?)^```$", re.MULTILINE | re.DOTALL)


@dataclass
class Block:
    language: str
    title: str
    flags: frozenset[str]
    body: str


def read_blocks(text: str) -> list[Block]:
    """Return the fenced blocks of `text` in order, with their title and flags."""
    blocks = []
    for match in _FENCE.finditer(text):
        words = shlex.split(match.group(2))
        title = next((word.split("=", 1)[1] for word in words if word.startswith("title=")), "")
        flags = frozenset(word for word in words if "=" not in word)
        blocks.append(Block(match.group(1), title, flags, match.group(3)))
    return blocks


@dataclass
class GuideRunner:
    """Runs blocks in one working directory and keeps the shell environment between them."""

    workdir: Path
    env: dict[str, str]
    sessions: list[int] = field(default_factory=list)
    page: object = None
    _browser: object = None
    _playwright: object = None
    _page_server: ThreadingHTTPServer | None = None

    def run(self, block: Block) -> str:
        handler = getattr(self, f"_run_{block.language}", None)
        assert handler is not None, f"no runner for ```{block.language} block {block.title!r}"
        return handler(block)

    def _run_bash(self, block: Block) -> str:
        if "background" in block.flags:
            process = subprocess.Popen(
                ["bash", "-c", block.body], cwd=self.workdir, env=self.env, start_new_session=True
            )
            self.sessions.append(process.pid)
            assert process.wait(BLOCK_TIMEOUT_S) == 0, f"{block.title!r} failed to start"
            return ""

        dump = self.workdir / ".env-after-block"
        script = f"set -euo pipefail\n{block.body}\nenv -0 > {shlex.quote(str(dump))}\n"
        deadline = time.monotonic() + (RETRY_TIMEOUT_S if "retry" in block.flags else 0)
        while True:
            done = subprocess.run(
                ["bash", "-c", script],
                cwd=self.workdir,
                env=self.env,
                capture_output=True,
                text=True,
                timeout=BLOCK_TIMEOUT_S,
                check=False,
            )
            if done.returncode == 0 or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        assert done.returncode == 0, (
            f"block {block.title!r} exited with {done.returncode}\n"
            f"stdout:\n{done.stdout}\nstderr:\n{done.stderr}"
        )
        entries = dump.read_bytes().split(b"\0")
        self.env = dict(entry.decode().split("=", 1) for entry in entries if b"=" in entry)
        return done.stdout

    def _run_python(self, block: Block) -> str:
        if block.title.endswith(".py"):
            (self.workdir / block.title).write_text(block.body)
            argv = [sys.executable, block.title]
        else:
            argv = [sys.executable, "-c", block.body]
        done = subprocess.run(
            argv,
            cwd=self.workdir,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=BLOCK_TIMEOUT_S,
            check=False,
        )
        assert done.returncode == 0, (
            f"block {block.title!r} exited with {done.returncode}\n"
            f"stdout:\n{done.stdout}\nstderr:\n{done.stderr}"
        )
        return done.stdout

    def _run_html(self, block: Block) -> str:
        from playwright.sync_api import sync_playwright

        assert PLACEHOLDER_HOST in block.body, (
            "the guide's page no longer uses the placeholder host"
        )
        html = block.body.replace(PLACEHOLDER_HOST, self.env["TRACKER_URL"])
        (self.workdir / block.title).write_text(html)
        if self._page_server is None:
            handler = functools.partial(_QuietHandler, directory=str(self.workdir))
            self._page_server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
            threading.Thread(
                target=self._page_server.serve_forever, args=(0.05,), daemon=True
            ).start()
            self._playwright = sync_playwright().start()
            self._browser = self._playwright.chromium.launch(
                executable_path=CHROMIUM, args=CHROMIUM_ARGS
            )
            self.page = self._browser.new_page()
        port = self._page_server.server_address[1]
        self.page.goto(f"http://127.0.0.1:{port}/{block.title}")
        return ""

    def _run_js(self, block: Block) -> str:
        assert self.page is not None, f"js block {block.title!r} comes before any html block"
        self.page.evaluate(block.body)
        return ""

    def close(self) -> None:
        if self._browser is not None:
            self._browser.close()
            self._playwright.stop()
        if self._page_server is not None:
            self._page_server.shutdown()
            self._page_server.server_close()
        for session in self.sessions:
            _stop_session(session)


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


def _stop_session(session: int) -> None:
    """Stop every process of a session this test started, politely first."""
    try:
        os.killpg(session, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + STOP_TIMEOUT_S
    while time.monotonic() < deadline:
        try:
            os.killpg(session, 0)
        except ProcessLookupError:
            return
        time.sleep(0.2)
    os.killpg(session, signal.SIGKILL)


def test_guide_has_runnable_blocks():
    blocks = read_blocks(GUIDE.read_text())
    languages = {block.language for block in blocks}
    assert len(blocks) >= 15
    assert languages == {"bash", "python", "html", "js"}
    assert all(block.title for block in blocks)


def test_onboarding_guide_runs(tmp_path: Path) -> None:
    workdir = tmp_path / "guide"
    workdir.mkdir()
    env = {key: value for key, value in os.environ.items() if not key.startswith("PYTEST_")}
    env.update(
        {
            "PORT": str(free_port()),
            "API_PORT": str(free_port()),
            "PATH": f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}",
            "LOG_FORMAT": "text",
            "ARCHIVE_COMMIT_SECONDS": "0.5",
        }
    )
    runner = GuideRunner(workdir=workdir, env=env)
    outputs: dict[str, str] = {}
    try:
        for block in read_blocks(GUIDE.read_text()):
            if block.language == "js":
                seen = LivePlatform(
                    Path(runner.env["TRACKER_DATA_DIR"]), runner.env, partitions=DEFAULT_PARTITIONS
                )
                seen.wait_for_events(
                    lambda e: e["event_type"] == "pageview" and e["params"]["key_prefix"] == "acme",
                    timeout=30,
                )
            started = time.monotonic()
            outputs[block.title] = runner.run(block)
            print(f"{time.monotonic() - started:6.1f} s  {block.title}")

        platform = LivePlatform(
            Path(runner.env["TRACKER_DATA_DIR"]), runner.env, partitions=DEFAULT_PARTITIONS
        )
        custom = platform.wait_for_events(lambda e: e["event_type"] == "add_to_cart", timeout=30)
        assert custom[0]["params"]["sku"] == "A-1"
        assert custom[0]["request_path"] == "/t/auto"
    finally:
        runner.close()

    assert '"status":"ok"' in outputs["Check health"].replace(" ", "")
    assert outputs["Follow an encrypted click"].startswith(
        "307 https://shop.example/secret-sale?ad_click_id="
    )
    assert outputs["Load the pixel"].strip() == "200 image/gif"
    assert "matched 1 of 1 clicks" in outputs["Run the attribution query"]
    assert "newsletter 1" in outputs["Run the stats query"]
    assert "postback visitor-42" in outputs["Run the stats query"]
