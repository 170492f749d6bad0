"""Stopping and resuming: a run killed mid-epoch (SIGKILL) or preempted (SIGTERM) and
resumed ends with exactly the weights of a run that never stopped (CPU, bit for bit).

The run that is stopped is a real CLI process (a signal must reach a process
of its own); the reference run and the resuming runs go in-process.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from cnnbench.errors import EXIT_STOPPED
from tests.conftest import run_command

# NIN on small synthetic images: dropout and crop/flip augmentation draw random
# numbers every step, and a step takes long enough to stop the run mid-epoch.
RUN = ["train", "model=nin_cifar", "data=synthetic", "data.train_size=64", "data.val_size=16",
       "data.batch_size=4", "trainer.epochs=2", "trainer.threads=1", "trainer.checkpoint_every_n_steps=2",
       "trainer.accelerator=cpu"]


def start(cwd: Path, *extra: str) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HYDRA_", "CNNBENCH_"))}
    return subprocess.Popen([sys.executable, "-m", "cnnbench", *RUN, *extra], cwd=cwd, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_for_mid_epoch_checkpoint(run_dir: Path, process: subprocess.Popen, timeout: float = 120) -> dict:
    """Poll checkpoints/last.pt until one taken in the middle of the first epoch appears."""
    last = run_dir / "checkpoints" / "last.pt"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert process.poll() is None, process.communicate()
        if last.is_file():
            state = torch.load(last, weights_only=False)
            if state["progress"]["epoch"] == 0 and state["progress"]["step"] > 0:
                return state
        time.sleep(0.02)
    process.kill()
    pytest.fail("no mid-epoch checkpoint appeared")


def final_weights(run_dir: Path) -> dict:
    return torch.load(run_dir / "checkpoints" / "last.pt", weights_only=False)


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory) -> dict:
    cwd = tmp_path_factory.mktemp("straight")
    run_command(*RUN, "hydra.run.dir=run", cwd=cwd)
    return final_weights(cwd / "run")


def assert_same_run(got: dict, expected: dict) -> None:
    for key, tensor in expected["model"].items():
        assert torch.equal(tensor, got["model"][key]), key
    assert got["metrics"] == expected["metrics"]
    assert [r["train"] for r in got["progress"]["history"]] == [r["train"] for r in expected["progress"]["history"]]


@pytest.mark.slow
def test_killed_mid_epoch_then_resumed(tmp_path, uninterrupted):
    process = start(tmp_path, "hydra.run.dir=run")
    seen = wait_for_mid_epoch_checkpoint(tmp_path / "run", process)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert seen["progress"]["step"] > 0
    resumed = run_command(*RUN, f"trainer.resume={tmp_path / 'run'}", cwd=tmp_path)
    assert "resumed from" in resumed.stdout
    assert_same_run(final_weights(tmp_path / "run"), uninterrupted)


@pytest.mark.slow
def test_sigterm_saves_and_stops_cleanly_then_resumes(tmp_path, uninterrupted):
    process = start(tmp_path, "hydra.run.dir=run")
    wait_for_mid_epoch_checkpoint(tmp_path / "run", process)
    process.send_signal(signal.SIGTERM)
    stdout, stderr = process.communicate(timeout=120)
    assert process.returncode == EXIT_STOPPED, stderr  # "stopped, resumable": not a finished run
    assert "stopped by SIGTERM" in stdout and "trainer.resume=" in stdout
    assert not (tmp_path / "run" / "results.json").exists(), "a stopped run has no results"
    stopped = final_weights(tmp_path / "run")
    assert stopped["progress"]["step"] > 0, "saved at the step boundary after the signal"
    run_command(*RUN, "trainer.resume=auto", "hydra.run.dir=run", cwd=tmp_path)
    assert_same_run(final_weights(tmp_path / "run"), uninterrupted)
