"""`cnnbench train trainer.devices=2` on CPU (gloo): the same run as one process with the same global batch.

Both runs are on the CPU (`trainer.accelerator=cpu`) wherever the tests run.
The runs start in-process; the two workers are processes of their own either
way, and print to this process's stdout (read with capfd).
"""

import json

import pytest
import torch

# fp32 on every CPU: the comparison is of DDP against one process, at fp32's rounding
# (trainer.precision=auto would pick bf16 on a CPU that has it, with bf16's rounding).
CPU = ("trainer.accelerator=cpu", "trainer.precision=fp32")


@pytest.mark.slow
def test_two_processes_follow_the_one_process_run(run, capfd):
    run("train", "trainer.epochs=1", *CPU, "hydra.run.dir=single")
    capfd.readouterr()
    ddp = run("train", "trainer.epochs=1", "trainer.devices=2", *CPU, "hydra.run.dir=ddp")
    stdout = ddp.stdout + capfd.readouterr().out  # the first worker logs the run
    assert "cpu x 2 processes" in stdout
    assert stdout.count("epoch 1/1") == 1, "only the first process logs"
    one = torch.load(run.cwd / "single" / "checkpoints" / "last.pt", weights_only=False)
    two = torch.load(run.cwd / "ddp" / "checkpoints" / "last.pt", weights_only=False)
    for key, tensor in one["model"].items():
        torch.testing.assert_close(two["model"][key], tensor, atol=1e-6, rtol=1e-5)
    assert len(two["ranks"]) == 2
    one_results = json.loads((run.cwd / "single" / "results.json").read_text())
    two_results = json.loads((run.cwd / "ddp" / "results.json").read_text())
    assert two_results["world_size"] == 2 and two_results["batch_size"] == one_results["batch_size"]
    # Evaluation splits the val set without padding: the same 299 images, the same counts.
    assert two_results["top1"] == one_results["top1"] and two_results["top5"] == one_results["top5"]


@pytest.mark.slow
def test_a_mistake_in_a_worker_is_one_line(cli):
    result = cli("train", "trainer.epochs=1", "trainer.devices=2", "data.batch_size=63", *CPU, "hydra.run.dir=bad")
    assert result.returncode == 2, result.stdout + result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert "Traceback" not in result.stderr
    assert len(lines) == 1 and lines[0].startswith("cnnbench train: error:") and "data.batch_size=63" in lines[0]


@pytest.mark.slow
def test_sigterm_to_a_two_process_run_saves_once_and_exits_quickly(tmp_path):
    """What SLURM or `timeout` do: SIGTERM to the whole process group. The workers save, the
    first prints the stop line once, and all exit within 10 s (SLURM's default grace is 30 s)."""
    import os
    import signal
    import subprocess
    import sys
    import time

    env = {k: v for k, v in os.environ.items() if not k.startswith(("HYDRA_", "CNNBENCH_"))}
    process = subprocess.Popen(
        [sys.executable, "-m", "cnnbench", "train", "trainer.devices=2", "trainer.epochs=100", *CPU,
         "trainer.progress_bar=false", "hydra.run.dir=run"],
        cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
    )
    log = tmp_path / "run" / "train.log"
    deadline = time.monotonic() + 120
    while not (log.is_file() and "epoch 1/100" in log.read_text()):
        assert process.poll() is None and time.monotonic() < deadline, "the run did not get to its first epoch"
        time.sleep(0.2)
    os.killpg(process.pid, signal.SIGTERM)
    stopped = time.monotonic()
    stdout, stderr = process.communicate(timeout=60)
    assert time.monotonic() - stopped < 10, "took too long to stop"
    assert process.returncode == 3, stderr  # EXIT_STOPPED: saved, resumable
    assert (stdout + stderr).count("stopped by SIGTERM") == 1
    assert "leaked" not in stderr, stderr  # the workers' semaphores were unlinked, none left to the resource tracker
    assert (tmp_path / "run" / "checkpoints" / "last.pt").is_file() and not (tmp_path / "run" / "results.json").exists()
