"""The README's "A walkthrough with curl" section, run block by block against `tracker up`.

The blocks are run as written, in one shell per step, except that the default ports 3030
and 8787 become the test's free ports and `tracker urls sign` gets the matching
`--base-url`, because the test cannot take the fixed default ports.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.platform_up import QUICK_ENV, run_up

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
    env = {
        "TRACKER_DATA_DIR": str(workdir / ".tracker"),
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
    }
    blocks = walkthrough_blocks()

    with run_up(".tracker", env=env, cwd=workdir) as running:
        step_env = {**os.environ, **QUICK_ENV, **env}
        step_env.pop("HOT_DSN", None)

        def run_step(index: int) -> str:
            """Run the variables block and block `index` in bash; return stdout."""
            script = blocks[0] + "\n" + blocks[index]
            script = script.replace("127.0.0.1:3030", running.ingest_url.removeprefix("http://"))
            script = script.replace("127.0.0.1:8787", running.api_url.removeprefix("http://"))
            script = script.replace(
                "tracker urls sign ", f"tracker urls sign --base-url {running.ingest_url} "
            )
            result = subprocess.run(
                ["bash", "-euo", "pipefail", "-c", script],
                cwd=workdir,
                env=step_env,
                capture_output=True,
                text=True,
                timeout=60,
            )
            assert result.returncode == 0, f"step {index} failed:\n{script}\n{result.stderr}"
            return result.stdout

        yield run_step


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
