"""The ingest process's allocator setting: applied on glibc, left to the operator's variable."""

from __future__ import annotations

import os
import subprocess
import sys

CHECK = "from tracker.ingest.memory import release_large_buffers\nprint(release_large_buffers())\n"


def _run(env: dict[str, str]) -> str:
    done = subprocess.run(
        [sys.executable, "-c", CHECK], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_threshold_set_on_glibc():
    env = {k: v for k, v in os.environ.items() if k != "MALLOC_MMAP_THRESHOLD_"}

    assert _run(env) == "True"


def test_operator_variable_wins():
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "131072"}

    assert _run(env) == "False"
