"""`cnnbench bench`: what it measures and prints (correctness only; speed is never asserted)."""

import json

import pytest
import torch

from omegaconf import OmegaConf

from cnnbench.config import TrainerConfig
from cnnbench.engine.bench import GPU_PEAK_TFLOPS, peak_tflops
from cnnbench.engine.speed import speed_for
from cnnbench.errors import UserError
from tests.conftest import run_command

TINY = ("model=lenet5", "data=digits", "data.batch_size=8", "bench.warmup_steps=1", "bench.windows=2",
        "bench.steps=2", "trainer.accelerator=cpu")


def test_bench_times_the_training_step_against_the_bare_loop(tmp_path):
    result = run_command("bench", *TINY, "bench.baseline=true", "bench.format=json", cwd=tmp_path)
    record = json.loads(result.stdout.strip().splitlines()[-1])
    assert record["mode"] == "train" and record["batch_size"] == 8 and record["input"] == [1, 32, 32]
    assert record["macs"] == 416520  # lenet5's, from the model's own summary
    assert record["images_per_s_min"] <= record["images_per_s"] <= record["images_per_s_max"]
    assert record["ratio_to_baseline"] == pytest.approx(record["images_per_s"] / record["baseline_images_per_s"])
    # Achieved FLOP/s of a training step: 3 x the forward pass's 2 x MACs per image.
    assert record["achieved_tflops"] == pytest.approx(6 * 416520 * record["images_per_s"] / 1e12)
    assert 0 < record["fraction_of_peak"] and record["peak_tflops"] > 0
    assert not list(tmp_path.iterdir()), "bench writes no files"


def test_bench_table_and_inference_mode(tmp_path):
    result = run_command("bench", *TINY, "bench.mode=infer", "trainer.precision=bf16", cwd=tmp_path)
    assert "lenet5 infer, batch 8 x (1, 32, 32)" in result.stdout and "bf16" in result.stdout
    assert "images/s (median" in result.stdout and "bare fp32" not in result.stdout


def test_bench_settings_are_checked(tmp_path):
    with pytest.raises(UserError, match="bench.steps must be at least 1"):
        run_command("bench", *TINY, "bench.steps=0", cwd=tmp_path)


def test_gpu_peaks_are_looked_up_by_name(monkeypatch):
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: "NVIDIA H200")
    speed = speed_for(OmegaConf.structured(TrainerConfig(precision="fp32")), torch.device("cpu"))
    assert peak_tflops(torch.device("cuda"), speed) == GPU_PEAK_TFLOPS["H200"][2]
