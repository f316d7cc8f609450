"""The README's "A walkthrough with curl" section, run block by block against `tracker up`.

The blocks are run as written, in one shell per step, except that the default ports 3030
and 8787 become the test's free ports and `tracker urls sign` gets the matching
`--base-url`, because the test cannot take the fixed default ports.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import free_port

README = Path(__file__).resolve().parents[2] / "README.md"
SECTION = "## A walkthrough with curl"


def walkthrough_blocks() -> list[str]:
    """Return the bash blocks of the walkthrough section, in order."""
    text = README.read_text(encoding="utf-8")
    assert SECTION in text, f"README.md has no section {SECTION!r}"
    section = text.split(SECTION, 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```bash\n(.*?)```", section, re.S)


@pytest.fixture(scope="module")
def walkthrough(tmp_path_factory: pytest.TempPathFactory):
    """`tracker up` with its data in `<cwd>/.tracker`, as the README assumes, and a step runner."""
    workdir = tmp_path_factory.mktemp("readme")
    ports = {"port": free_port(), "api": free_port(), "sse": free_port()}
    env = dict(os.environ)
    env.pop("HOT_DSN", None)
    env.update(
        {
            "ARCHIVE_COMMIT_SECONDS": "1",
            "REGISTRY_REFRESH_SECONDS": "1",
            "TRACKER_DATA_DIR": str(workdir / ".tracker"),
            "PATH": f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}",
        }
    )
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tracker.cli.main",
            "up",
            "--data-dir",
            ".tracker",
            "--port",
            str(ports["port"]),
            "--api-port",
            str(ports["api"]),
            "--sse-port",
            str(ports["sse"]),
            "--json",
        ],
        cwd=workdir,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    blocks = walkthrough_blocks()

    def run_step(index: int) -> str:
        """Run the variables block and block `index` in bash; return stdout."""
        script = blocks[0] + "\n" + blocks[index]
        script = script.replace("127.0.0.1:3030", f"127.0.0.1:{ports['port']}")
        script = script.replace("127.0.0.1:8787", f"127.0.0.1:{ports['api']}")
        script = script.replace(
            "tracker urls sign ", f"tracker urls sign --base-url http://127.0.0.1:{ports['port']} "
        )
        result = subprocess.run(
            ["bash", "-euo", "pipefail", "-c", script],
            cwd=workdir,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert result.returncode == 0, f"step {index} failed:\n{script}\n{result.stderr}"
        return result.stdout

    try:
        ready: set[str] = set()
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and len(ready) < 9:
            line = process.stdout.readline()
            if not line:
                break
            record = json.loads(line)
            if record.get("state") == "running":
                ready.add(record["name"])
        assert len(ready) == 9, f"components ready: {sorted(ready)}"
        yield run_step
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _poll_json(run_step, index: int, done, timeout: float = 90) -> dict:
    """Run a query step until `done(answer)` holds; the consumers need a moment to catch up."""
    deadline = time.monotonic() + timeout
    answer: dict = {}
    while time.monotonic() < deadline:
        answer = json.loads(run_step(index))
        if done(answer):
            return answer
        time.sleep(1)
    raise AssertionError(f"step {index} never reached the expected counts; last answer {answer}")


def test_readme_has_six_walkthrough_blocks():
    blocks = walkthrough_blocks()
    assert len(blocks) == 6
    assert "demo-tenant.json" in blocks[0]


def test_readme_walkthrough_steps(walkthrough):
    click = walkthrough(1).strip()
    assert re.fullmatch(r"307 https://example\.com/landing\?ad_click_id=[0-9a-f-]{36}", click), (
        click
    )

    postback = json.loads(walkthrough(2))
    assert re.fullmatch(r"[0-9a-f-]{36}", postback["event_id"])

    batch = json.loads(walkthrough(3))
    assert batch["accepted"] == 1
    assert len(batch["rejected"]) == 1
    assert batch["rejected"][0]["index"] == 1
    assert batch["rejected"][0]["field"] == "event_type"

    stats = _poll_json(walkthrough, 4, lambda answer: answer.get("total") == 3)
    rows = {(row["event_type"], row["param:sub1"]): row["count"] for row in stats["rows"]}
    assert rows == {("click", "google"): 1, ("postback", None): 1, ("signup", None): 1}
    assert stats["tier"] in ("warm", "cold")

    match = _poll_json(walkthrough, 5, lambda answer: answer.get("summary", {}).get("matched") == 1)
    assert match["summary"]["triggers"] == 1
    assert match["summary"]["results"] == 1
    assert match["match_rate"] == 1.0
    assert match["pairs"][0]["trigger_event"]["params"]["click_id"] == "c-1001"
