"""`cnnbench train trainer.devices=2` on CPU (gloo): the same run as one process with the same global batch."""

import json

import torch


def test_two_processes_follow_the_one_process_run(cli):
    single = cli("train", "trainer.epochs=1", "hydra.run.dir=single")
    assert single.returncode == 0, single.stderr
    ddp = cli("train", "trainer.epochs=1", "trainer.devices=2", "hydra.run.dir=ddp")
    assert ddp.returncode == 0, ddp.stderr
    assert "cpu x 2 processes" in ddp.stdout
    assert ddp.stdout.count("epoch 1/1") == 1, "only the first process logs"
    one = torch.load(cli.cwd / "single" / "checkpoints" / "last.pt", weights_only=False)
    two = torch.load(cli.cwd / "ddp" / "checkpoints" / "last.pt", weights_only=False)
    for key, tensor in one["model"].items():
        torch.testing.assert_close(two["model"][key], tensor, atol=1e-6, rtol=1e-5)
    assert len(two["ranks"]) == 2
    one_results = json.loads((cli.cwd / "single" / "results.json").read_text())
    two_results = json.loads((cli.cwd / "ddp" / "results.json").read_text())
    assert two_results["world_size"] == 2 and two_results["batch_size"] == one_results["batch_size"]
    # Evaluation splits the val set without padding: the same 299 images, the same counts.
    assert two_results["top1"] == one_results["top1"] and two_results["top5"] == one_results["top5"]


def test_a_mistake_in_a_worker_is_one_line(cli):
    result = cli("train", "trainer.epochs=1", "trainer.devices=2", "data.batch_size=63", "hydra.run.dir=bad")
    assert result.returncode == 2, result.stdout + result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert "Traceback" not in result.stderr
    assert len(lines) == 1 and lines[0].startswith("cnnbench train: error:") and "data.batch_size=63" in lines[0]
