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
