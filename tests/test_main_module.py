"""``python -m lucidnet`` runs the CLI (what a user types when the script is not on PATH)."""

from __future__ import annotations

import subprocess
import sys


def test_python_dash_m_lucidnet_runs_the_cli() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "lucidnet", "train", "--help"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert "--target" in done.stdout
