"""Shared test helpers: run the real CLI in a subprocess, in a temporary folder."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


def run_cli(*args: str, cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess:
    """`python -m cnnbench ARGS...` with no TTY, the way a user's shell would run it."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HYDRA_", "CNNBENCH_"))}
    env["PYTHONUNBUFFERED"] = "1"
    return subprocess.run(
        [sys.executable, "-m", "cnnbench", *args],
        cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout,
    )


@pytest.fixture
def cli(tmp_path):
    """Run the CLI with the current folder set to a fresh temporary folder."""

    def run(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
        return run_cli(*args, cwd=tmp_path, timeout=timeout)

    run.cwd = tmp_path
    return run
