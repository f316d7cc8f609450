"""A short, bounded atheris session over every decoder of the extension."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

HARNESS = Path(__file__).parent / "fuzz_decoders.py"


def test_fuzz_decoders_short_run(tmp_path: Path) -> None:
    completed = subprocess.run(
        [
            sys.executable,
            str(HARNESS),
            "-runs=30000",
            "-max_len=4096",
            "-seed=1",
            f"-artifact_prefix={tmp_path}/",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    assert "Done 30000 runs" in completed.stderr
    assert list(tmp_path.iterdir()) == []
