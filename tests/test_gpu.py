"""On a CUDA GPU: mixed-precision training (bf16 autocast; fp16 with the gradient scaler),
channels-last by default, and multi-crop evaluation.

Marked `gpu`: skipped where torch sees no CUDA GPU (tests/conftest.py), run as
they are on a machine with one (`pytest -m gpu`).
"""

from __future__ import annotations

import math

import pytest
import torch
from omegaconf import OmegaConf

from cnnbench.config import TrainerConfig
from cnnbench.engine.speed import speed_for
from tests.conftest import run_command

pytestmark = pytest.mark.gpu

# One epoch of LeNet-5 on the bundled digits (299 validation images), on the GPU.
CUDA = ["trainer.accelerator=cuda", "trainer.epochs=1", "trainer.progress_bar=false"]


def weights(checkpoint: dict) -> dict:
    return {key: value for key, value in checkpoint["model"].items() if value.is_floating_point()}


@pytest.fixture(scope="module")
def bf16_run(tmp_path_factory):
    """bf16 autocast with the device's default layout, and a final 2-crop evaluation."""
    if not torch.cuda.is_bf16_supported():
        pytest.skip("this GPU has no bf16")
    cwd = tmp_path_factory.mktemp("bf16")
    return run_command("train", *CUDA, "trainer.precision=bf16", "eval.crops=2", "hydra.run.dir=run", cwd=cwd)


def test_channels_last_and_mixed_precision_are_the_defaults_on_cuda():
    speed = speed_for(OmegaConf.structured(TrainerConfig), torch.device("cuda"))
    assert speed.channels_last
    assert speed.precision == ("bf16" if torch.cuda.is_bf16_supported() else "fp16")
    assert speed.scaler.is_enabled() == (speed.precision == "fp16")
    images = speed.to_input(torch.randn(2, 3, 8, 8, device="cuda"))
    assert images.is_contiguous(memory_format=torch.channels_last)


def test_bf16_training_on_cuda(bf16_run):
    results = bf16_run.results
    assert results["precision"] == "bf16" and results["device"].startswith("cuda")
    assert results["epochs"] == 1 and 0 <= results["top1"] <= results["top5"] <= 100
    assert "cuda:0, bf16, channels-last" in bf16_run.stdout, "channels-last is the default on CUDA"
    checkpoint = torch.load(bf16_run.run_dir / "checkpoints" / "last.pt", weights_only=False)
    assert checkpoint["scaler"] == {}, "no gradient scaler under bf16"
    for key, tensor in weights(checkpoint).items():  # autocast computes in bf16; the weights stay fp32
        assert tensor.dtype == torch.float32 and torch.isfinite(tensor).all(), key


def test_final_two_crop_evaluation_on_cuda(bf16_run):
    assert "val with 2 crops" in bf16_run.stdout
    results = bf16_run.results
    assert 0 <= results["top1_2crop"] <= 100 and "loss_2crop" in results


def test_two_crop_evaluation_of_a_cuda_checkpoint(bf16_run, run):
    result = run("eval", f"checkpoint={bf16_run.run_dir}", "eval.crops=2", "accelerator=cuda")
    record = result.results
    assert record["crops"] == 2 and record["samples"] == 299 and record["epoch"] == 1
    assert 0 <= record["top1"] <= record["top5"] <= 100 and math.isfinite(record["loss"])
    assert len(record["per_class_top1"]) == 10
    assert "2 crop(s)" in result.stdout


def test_fp16_training_uses_the_gradient_scaler(run):
    result = run("train", *CUDA, "trainer.precision=fp16", "hydra.run.dir=run")
    results = result.results
    assert results["precision"] == "fp16" and results["device"].startswith("cuda")
    assert 0 <= results["top1"] <= 100 and math.isfinite(results["loss"])
    assert "cuda:0, fp16, channels-last" in result.stdout
    checkpoint = torch.load(result.run_dir / "checkpoints" / "last.pt", weights_only=False)
    scaler = checkpoint["scaler"]
    assert scaler, "fp16 saves the gradient scaler's state, so a resumed run goes on with its scale"
    assert 0 < scaler["scale"] < math.inf and "_growth_tracker" in scaler
    for key, tensor in weights(checkpoint).items():
        assert tensor.dtype == torch.float32 and torch.isfinite(tensor).all(), key
